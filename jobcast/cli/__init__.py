"""The `jobcast` command: `web`, `worker`, `dev`, `watch` and `new-key` (commands.py, the one place
that starts the web server and the workers), `jobcast dev`'s supervisor and `jobcast watch`."""

from jobcast.cli.commands import main

__all__ = ["main"]
