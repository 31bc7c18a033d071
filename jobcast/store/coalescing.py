"""One script call in flight per process, carrying everything asked for while the last was on its
way: what a process's many concurrent callers (a worker's output writers, a web process's single
submissions) would otherwise pay one call each for.

A caller's items are answered in order, from the call that carried them; a call's error goes to
each of its callers. The first caller to find no call in flight sends one, for itself and whoever
has queued, and waits for it; a call carries other callers' items, so it is its own task, which
ends even when the caller that sent it is cancelled, and `aclose` waits for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Result]]], most: int, name: str) -> None:
        """`send`: one call for many items, their results in order; `most`: items a call carries
        at most (a caller's items are never split, so one caller with more goes alone)."""
        self._send_items = send
        self._most = most
        self._name = name
        self._queued: list[tuple[list[Item], asyncio.Future[list[Result]]]] = []
        self._lock: asyncio.Lock | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def submit(self, items: list[Item]) -> list[Result]:
        """`items`' results, from the next call that carries them."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queued.append((items, future))
        if self._lock is None:
            self._lock = asyncio.Lock()
        while not future.done():
            async with self._lock:
                if future.done():
                    break
                batch = self._take()
                send = asyncio.create_task(self._send(batch), name=self._name)
                self._sends.add(send)
                send.add_done_callback(self._sends.discard)
                await asyncio.shield(send)
        return future.result()

    def _take(self) -> list[tuple[list[Item], asyncio.Future[list[Result]]]]:
        """The queued callers the next call carries: in order, up to `most` items, at least one."""
        taken, count = 0, 0
        for items, _ in self._queued:
            if taken and count + len(items) > self._most:
                break
            taken += 1
            count += len(items)
        batch = self._queued[:taken]
        del self._queued[:taken]
        return batch

    async def _send(self, batch: list[tuple[list[Item], asyncio.Future[list[Result]]]]) -> None:
        try:
            results = await self._send_items([item for items, _ in batch for item in items])
        except Exception as e:  # each caller decides what a failed call means for it
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        start = 0
        for items, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(items)])
            start += len(items)

    async def aclose(self) -> None:
        """Wait for the calls on their way (the process is closing)."""
        if self._sends:
            await asyncio.wait(set(self._sends))
