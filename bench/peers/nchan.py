"""nchan (nginx's pub/sub module, Debian's libnginx-mod-nchan) with Redis storage, as its docs set
it up: `GET /sub/{job}` serves EventSource and WebSocket subscribers, `POST /pub/{job}` publishes.

One nginx process (`master_process off`, so one pid to pin and meter), Redis as the message store.
`config()` writes the nginx.conf; `available()` says whether nginx and the module are installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
# A channel's info from the publisher location: 404 (no such channel) once Redis is connected,
# 503 before.
READY_PATH = "/pub/ready"


def available() -> bool:
    return shutil.which("nginx") is not None and MODULE.exists()


def config(directory: Path, port: int, redis_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / temp).mkdir(exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(
        f"""
load_module {MODULE};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    upstream redis_store {{ nchan_redis_server {redis_url}; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber;
            nchan_channel_id $1;
            nchan_redis_pass redis_store;
        }}
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_redis_pass redis_store;
        }}
    }}
}}
"""
    )
    return path


def command(directory: Path, port: int, redis_url: str) -> list[str]:
    conf = config(directory, port, redis_url)
    return ["nginx", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
