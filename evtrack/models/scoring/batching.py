"""Adaptive batching: concurrent requests merged into one model call.

Requests whose (already schema-checked) input is a data frame and that carry no
params wait in a queue; one task takes everything queued (up to ``max_size`` rows),
waits at most ``max_ms`` for more when the batch is not full, calls the model once
and hands each request its slice of the predictions. With ``max_ms=0`` a batch is
whatever queued up while the previous call ran, so a lone request waits for nothing.
A batch whose prediction count differs from its row count (a model that does not
answer row by row) is re-run request by request, so results are never misaligned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Batcher"]


class Batcher:
    def __init__(
        self,
        predict: Callable[[Any], Any],
        run: Callable[..., Any],
        max_size: int,
        max_ms: float,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._run = run  # runs a blocking call off the event loop (with the timeout)
        self.max_size = max(1, max_size)
        self.max_ms = max(0.0, max_ms)
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task | None = None
        self._on_batch = on_batch

    def start(self) -> asyncio.Queue[tuple[Any, asyncio.Future[Any]]]:
        queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()
        self._queue = queue
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return queue

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def submit(self, frame: Any) -> Any:
        queue = self._queue if self._queue is not None else self.start()
        fut = asyncio.get_running_loop().create_future()
        await queue.put((frame, fut))
        return await fut

    async def _collect(self) -> list[tuple[Any, asyncio.Future]]:
        queue = self._queue
        assert queue is not None, "_loop runs only after start() made the queue"
        items = [await queue.get()]
        rows = len(items[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_ms / 1000
        while rows < self.max_size:
            if queue.empty():
                wait = deadline - asyncio.get_running_loop().time()
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except asyncio.TimeoutError:
                    break
            else:
                item = queue.get_nowait()
            items.append(item)
            rows += len(item[0])
        return items

    async def _loop(self) -> None:
        while True:
            items = await self._collect()
            try:
                await self._serve(items)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # delivered to each waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)

    async def _serve(self, items: list[tuple[Any, asyncio.Future]]) -> None:

        frames = [f for f, _ in items]
        sizes = [len(f) for f in frames]
        if self._on_batch is not None:
            self._on_batch(sum(sizes), len(items))
        if len(items) == 1:
            items[0][1].set_result(await self._run(self._predict, frames[0]))
            return
        merged = _merge(frames)
        pred = await self._run(self._predict, merged)
        if len(pred) != sum(sizes):
            for frame, fut in items:  # not row-aligned: call once per request
                fut.set_result(await self._run(self._predict, frame))
            return
        start = 0
        for size, (_, fut) in zip(sizes, items):
            part = (
                pred.iloc[start : start + size]
                if hasattr(pred, "iloc")
                else pred[start : start + size]
            )
            if not fut.done():
                fut.set_result(part)
            start += size


def _merge(frames: list[Any]):
    """One frame of all rows. Frames of one numeric dtype (what the fast request path
    makes) are stacked as arrays, several times cheaper than ``pd.concat``."""
    import numpy as np
    import pandas as pd

    first = frames[0]
    cols = list(first.columns)
    dtypes = set(first.dtypes)
    if len(dtypes) == 1 and next(iter(dtypes)).kind in "fiub":
        dtype = next(iter(dtypes))
        if all(list(f.columns) == cols and set(f.dtypes) == {dtype} for f in frames[1:]):
            return pd.DataFrame(np.vstack([f.to_numpy() for f in frames]), columns=cols)
    return pd.concat(frames, ignore_index=True)
