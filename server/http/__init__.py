"""HTTP plumbing every room stands on: the server and its socket hand-over, problem documents,
request ids, the access log, the OpenAPI document and its models, JSON bodies, and the RFC 6455
frame codec."""
