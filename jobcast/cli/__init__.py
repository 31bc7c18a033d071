"""The `jobcast` command: `web`, `worker`, `dev` and `watch`, and the one place that starts the web
server and the workers (main.py, the composition root)."""
