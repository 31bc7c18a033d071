"""Talking to Redis: command clients that ride out restarts and failovers (client.py), the lean
pub/sub protocol (pubsub.py), and the private server `jobcast dev` and the tests start (embedded.py)."""
