"""A request's partial results, from the worker thread that computes them to the event loop.

`/generate` shows its text as it is written. The decode loop must not slow down for it: a
batch of sixteen students is one forward per step, and decoding sixteen partial texts at every
step would cost that batch time for texts nobody reads (the bot edits a message about once a
second). So a stream is pulled, not pushed: the reader *asks* (`asked` is set), and the worker
makes a partial result only at the end of a decode step when it was asked, then hands it over
with `call_soon_threadsafe`. A stream nobody reads costs the loop one flag check per step.

    stream = engine.stream(GenerateRequest("Once upon a time", max_new_tokens=100))
    async for partial in stream:      # one partial per ask, each at the end of a decode step
        show(partial.continuations)
    result = await stream             # the whole answer, exactly as `engine.submit` gives it
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any, Generic, TypeVar

P = TypeVar("P")


class Stream(Generic[P]):
    """The partial results of one admitted request (an async iterator) and its final result
    (awaitable). Iteration ends when the result is ready (or failed: awaiting raises then).
    Cancelling the stream's `future` frees the request's queue slot, as for `admit`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: Read by the worker thread at the end of each step: make a partial result now.
        self.asked = False
        self._waiter: asyncio.Future[P] | None = None
        #: The final result (set by the engine once the request is admitted).
        self.future: asyncio.Future[Any] = loop.create_future()

    # ------------------------------------------------------------------ worker side

    def offer(self, partial: P) -> None:
        """Hand a partial result to the reader that asked for it (any thread)."""
        self.asked = False
        self._loop.call_soon_threadsafe(self._deliver, partial)

    def _deliver(self, partial: P) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # the reader may have stopped waiting
            waiter.set_result(partial)

    # ------------------------------------------------------------------ reader side

    def __aiter__(self) -> AsyncIterator[P]:
        return self

    async def __anext__(self) -> P:
        """The partial result at the end of the next decode step; StopAsyncIteration once
        the final result is in (or the request failed)."""
        if self.future.done():
            raise StopAsyncIteration
        waiter = self._waiter = self._loop.create_future()
        self.asked = True
        try:
            await asyncio.wait({waiter, self.future}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.asked = False
            self._waiter = None
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        raise StopAsyncIteration

    def __await__(self) -> Generator[Any, None, Any]:
        return self.future.__await__()


__all__ = ["Stream"]
