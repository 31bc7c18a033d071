"""redis-py's asyncio PubSub as a relay's reader would use it (with hiredis): subscribe to one
channel and take messages one `get_message()` at a time, as its docs show, counting them.

Run as `python -m bench.peers.redispy_reader --redis-url URL --channel C --seconds S`. Prints
`ready` once subscribed, then, after the first message and S seconds, or once the stream stops
(Redis disconnected it for a full output buffer), one JSON line: how many it took, in how long,
and whether it was disconnected.
"""

from __future__ import annotations

import argparse
import time

import orjson
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError


async def read(url: str, channel: str, seconds: float) -> dict[str, object]:
    client = aioredis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    print("ready", flush=True)
    taken, first, disconnected = 0, None, False
    try:
        while first is None or time.perf_counter() - first < seconds:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                if first is not None:
                    break  # nothing for a second: the publisher is done and we caught up
                continue
            if first is None:
                first = time.perf_counter()
            taken += 1
    except RedisConnectionError:
        disconnected = True
    elapsed = time.perf_counter() - (first or time.perf_counter())
    await client.aclose()
    return {"taken": taken, "seconds": elapsed, "disconnected": disconnected}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.redispy_reader")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    result = uvloop.run(read(args.redis_url, args.channel, args.seconds))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
