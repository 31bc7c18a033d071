"""Talking to Redis: command clients that ride out restarts and failovers (client.py), the lean
pub/sub protocol (pubsub.py), and the private server `jobcast dev` and the tests start (embedded.py)."""

from jobcast.deprecation import moved


def __getattr__(name: str) -> object:
    # This package was one module until 0.2.0: its names still resolve, with a warning.
    return moved(__name__, name, ("jobcast.redis.client",))
