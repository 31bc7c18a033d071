"""A job kind from outside jobcast, for the registry tests (JOBCAST_KINDS=tests.kinds_extra)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobcast import JobContext, Kind


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


async def echo(ctx: JobContext, params: EchoParams) -> dict[str, str]:
    await ctx.progress.update(1, 1, params.text)
    return {"echo": params.text}


ECHO = Kind(name="echo", title="Echo", params=EchoParams, run=echo, max_attempts=1)
