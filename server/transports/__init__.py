"""The two ways a watcher follows events: Server-Sent Events (sse.py, detached.py) and WebSocket
(ws.py, websocket/)."""
