"""WebSocket connections held without aiohttp once their handshake is answered.

aiohttp keeps about 16 KB per open WebSocket (its request handler and parser, the request, the
response with its reader and writer, the connection's task and the handler's frames), for as long
as the connection stays open. jobcast answers the handshake with aiohttp (`handshake.py`), then
hands the socket to a small protocol of its own (`socket.py`) that reads and writes the frames
itself (`frames.py`). An idle connection then costs its socket, its outbox, its place in the hub
and two small objects; pings for every connection of the process come from one task.
"""
