"""HTTP plumbing every room stands on: the server and its socket hand-over, the one middleware,
problem documents, request ids, the access log, the OpenAPI document and its models, and the
RFC 6455 frame codec."""
