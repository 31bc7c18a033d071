"""python-socketio, as its docs set it up: AsyncServer on aiohttp with AsyncRedisManager.

A client joins a job's room by emitting `watch` with the job id; the publisher emits `progress`
to that room through its own write-only AsyncRedisManager. uvloop, as for jobcast.
Run as `python -m bench.peers.socketio_server --port P --redis-url URL`.
"""

from __future__ import annotations

import argparse
import asyncio

import socketio
import uvloop
from aiohttp import web


def create_app(redis_url: str) -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=socketio.AsyncRedisManager(redis_url))

    @sio.on("watch")
    async def watch(sid: str, job_id: str) -> None:
        await sio.enter_room(sid, job_id)

    app = web.Application()
    sio.attach(app)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(create_app(args.redis_url), host=args.host, port=args.port, backlog=4096, print=None)
