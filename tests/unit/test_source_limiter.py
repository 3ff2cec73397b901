"""A source's declared rate limit holds in this process, and only for that source."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tickbase.marketdata.collector import Request, Source, SourceLimiter


class Counted(Source):
    kind = "sentiment"

    def __init__(self, name: str, rate_limit: str | None) -> None:
        self.name = name
        self.rate_limit = rate_limit

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        raise NotImplementedError

    def validate(self, raw: Any, request: Request) -> list[Any]:
        raise NotImplementedError


async def test_the_window_holds_the_excess_and_other_sources_go_on() -> None:
    limiter = SourceLimiter()
    slow, free = Counted("slow", "2/0.4s"), Counted("free", None)
    started = time.monotonic()
    assert await limiter.acquire(slow) == 0.0
    assert await limiter.acquire(slow) == 0.0
    third = asyncio.create_task(limiter.acquire(slow))
    await asyncio.sleep(0.05)
    assert not third.done(), "the third start waits for the window to slide"
    assert await limiter.acquire(free) == 0.0, "another source is not held up"
    waited = await third
    assert 0.25 < waited <= 0.4 and time.monotonic() - started >= 0.39
