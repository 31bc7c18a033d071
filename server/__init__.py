"""The web server: REST API, and the relay of job events to SSE and WebSocket watchers."""
