"""Jobs' output: named text streams that job code writes (`ctx.output`), kept whole in Redis for the
job's retention and sent to watchers as `output` events in the job's one stream.

Each attempt's stream is a Redis string that only grows (`{P}:output:{id}:{attempt}:{stream}`). The
script that appends a chunk publishes its event in the same step and writes the stream's new length
into the job's record (`out:<attempt>:<stream>`), so a snapshot's lengths are exactly the text
before its seq: reading `[0, length)` afterwards gives that text, whatever was appended since.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jobcast.errors import OutputLimitExceeded
from jobcast.protocol import OUTPUT_STREAM, Keys, output_template
from jobcast.redis.client import awaited
from jobcast.settings import Settings
from jobcast.snapshot import JobSnapshot, OutputRef
from jobcast.store.coalescing import Coalescer
from jobcast.store.scripts import Answer, Scripts, Status

# The arguments one call gives all its chunks.
_PER_CALL = frozenset({"max_bytes", "max_streams"})

_LENGTH_FIELD = re.compile(rb"out:(\d+):(" + OUTPUT_STREAM.encode() + rb")")


@dataclass(frozen=True, slots=True)
class StreamLength:
    attempt: int
    stream: str
    length: int


def output_lengths(raw: dict[bytes, bytes]) -> list[StreamLength]:
    """Every attempt's output streams and their lengths in bytes, from the job's record."""
    found = []
    for key, value in raw.items():
        if key.startswith(b"out:") and (match := _LENGTH_FIELD.fullmatch(key)):
            found.append(StreamLength(int(match[1]), match[2].decode(), int(value)))
    return sorted(found, key=lambda s: (s.attempt, s.stream))


class Outputs:
    """Jobs' output streams in Redis. Appends made while one is on its way go in the next call
    together, whichever jobs they are of (a worker's writers each send when their batching window
    ends, and a hundred of them would otherwise cost a hundred script calls): at most one call is
    in flight per process, with up to `JOBCAST_OUTPUT_BATCH_CHUNKS` chunks."""

    def __init__(self, redis: Any, scripts: Scripts, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.max_bytes = settings.max_output_bytes
        self.max_streams = settings.max_output_streams
        self.inline_bytes = settings.output_inline_bytes
        self._calls: Coalescer[tuple[dict[str, str], dict[str, Any]], Answer] = Coalescer(
            self._send, settings.output_batch_chunks, "output-batch"
        )

    def call(
        self, job_id: str, attempt: int, stream: str, data: str
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The output script's keys and arguments for one chunk."""
        head, tail = output_template(job_id, attempt, stream, data)
        _, full_tail = output_template(job_id, attempt, stream, "", limit_reached=True)
        keys = {
            "job": self.keys.job(job_id),
            "history": self.keys.history(job_id),
            "channel": self.keys.channel(job_id),
            "output": self.keys.output(job_id, attempt, stream),
        }
        args = {
            "id": job_id,
            "attempt": attempt,
            "stream": stream,
            "data": data,
            "length_field": f"out:{attempt}:{stream}",
            "used_field": f"out-bytes:{attempt}",
            "full_field": f"out-full:{attempt}",
            "head": head.decode(),
            "tail": tail.decode(),
            "full_tail": full_tail.decode(),
            "max_bytes": self.max_bytes,
            "max_streams": self.max_streams,
        }
        return keys, args

    def batch_call(
        self, calls: list[tuple[dict[str, str], dict[str, Any]]]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The output script's keys and arguments for many chunks (each as `call` gives it) in one
        call: item i's keys by their names followed by `.i`."""
        keys = {f"{name}.{i}": key for i, (named, _) in enumerate(calls, 1) for name, key in named.items()}
        items = [{k: v for k, v in args.items() if k not in _PER_CALL} for _, args in calls]
        return keys, {"items": items, "max_bytes": self.max_bytes, "max_streams": self.max_streams}

    async def append(self, job_id: str, attempt: int, stream: str, data: str) -> int:
        """Append `data` to the attempt's stream and publish it; its seq (0: the job ended, or runs
        another attempt). Raises OutputLimitExceeded past the limits."""
        keys, args = self.call(job_id, attempt, stream, data)
        answer = await self._batched(keys, args)
        status = answer.status
        if status is Status.OVER_LIMIT and answer.get("quota"):
            raise OutputLimitExceeded(
                "the job's output is over its owner's disk quota (JOBCAST_DISK_QUOTA_BYTES): "
                "delete finished jobs, or wait for them to expire"
            )
        if status is Status.OVER_LIMIT:
            raise OutputLimitExceeded(
                f"the job's output is over its limit: {self.max_bytes} bytes an attempt "
                "(JOBCAST_MAX_OUTPUT_BYTES)"
            )
        if status is Status.TOO_MANY_STREAMS:
            raise OutputLimitExceeded(
                f"at most {self.max_streams} output streams an attempt (JOBCAST_MAX_OUTPUT_STREAMS)"
            )
        return int(answer["seq"]) if status is Status.PUBLISHED else 0

    async def _batched(self, keys: dict[str, str], args: dict[str, Any]) -> Answer:
        """One chunk's answer, from the next call that carries it."""
        (answer,) = await self._calls.submit([(keys, args)])
        return answer

    async def _send(self, calls: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Answer]:
        """One call for many chunks, their answers in order."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self.scripts.call("output", keys, **args)]
        keys, args = self.batch_call(calls)
        answer = await self.scripts.call("output", keys, **args)
        return [Answer(a) for a in answer["answers"]]

    async def aclose(self) -> None:
        """Wait for the calls on their way (the process is closing)."""
        await self._calls.aclose()

    async def read(
        self, job_id: str, attempt: int, stream: str, start: int = 0, end: int | None = None
    ) -> bytes:
        """The stream's bytes `[start, end)` (end None: all there are now)."""
        if end is not None and end <= start:
            return b""
        last = -1 if end is None else end - 1
        data = await awaited(self.redis.getrange(self.keys.output(job_id, attempt, stream), start, last))
        return bytes(data)

    async def attach(self, snapshot: JobSnapshot, raw: dict[bytes, bytes]) -> JobSnapshot:
        """The snapshot with its `output`: each stream of the job's attempt now, as its text up to
        the record's length (the snapshot's moment), or as `{length, href}` past
        `JOBCAST_OUTPUT_INLINE_BYTES`."""
        attempt = snapshot["attempt"]
        streams = [s for s in output_lengths(raw) if s.attempt == attempt]
        output: dict[str, str | OutputRef] = {}
        inline = [s for s in streams if s.length <= self.inline_bytes]
        if inline:
            async with self.redis.pipeline(transaction=False) as pipe:
                for s in inline:
                    pipe.getrange(self.keys.output(snapshot["id"], attempt, s.stream), 0, s.length - 1)
                texts = await pipe.execute()
            for s, data in zip(inline, texts, strict=True):
                output[s.stream] = bytes(data[: s.length]).decode(errors="replace") if s.length else ""
        for s in streams:
            if s.length > self.inline_bytes:
                output[s.stream] = {"length": s.length, "href": output_href(snapshot, s)}
        snapshot["output"] = dict(sorted(output.items()))
        return snapshot


def output_href(snapshot: JobSnapshot, s: StreamLength) -> str:
    """Where a stream's text up to `s.length` is read (its job's `self` link, and token)."""
    base = snapshot["links"].get("self", f"/api/jobs/{snapshot['id']}")
    href = f"{base}/output/{s.stream}?attempt={s.attempt}&end={s.length}"
    if snapshot["stream_token"]:
        href += f"&token={quote(snapshot['stream_token'])}"
    return href
