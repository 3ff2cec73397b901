"""A fake market-data exchange: a real HTTP server on 127.0.0.1 speaking the sources' real formats.

Starlette served by uvicorn in a background thread with its own event loop, so it works
from sync and async tests alike::

    with FakeExchange(now=NOW) as fake:
        fake.inject("/api/v3/klines", Fault.rate_limited(retry_after="1"), Fault.status(500))
        source = BinanceKlines(base_url=fake.url)
        ...
        fake.requests("/api/v3/klines")  # [(monotonic time, path, query dict), ...]

Routes and the real data behind each (nothing is generated):

- ``GET /api/v3/klines`` (Binance): :func:`~tests.support.grid.grid_klines` of
  the sample series mapped from the symbol (with ``startTime``/``endTime``: the slots
  opening within them, :func:`~tests.support.grid.grid_klines_between`). The samples have no quote volume, trade count
  or taker volumes: those Binance fields are sent as zeros.
- ``GET /api/v3/coins/{id}/ohlc`` (CoinGecko): the same replayed bars, at CoinGecko's
  automatic candle size for ``days``, stamped with the candle's close time.
- ``GET /fng/`` (alternative.me): no fear-and-greed history ships in any package, so the
  CBOE VIX closes of ``tests/data/macro/vix-1d.csv`` (a copy of the shared
  ``macro/vix-1d.csv``; holidays without a close left out) stand in for the index
  values, clipped to 0..100 and rounded, with their own dates.
- ``GET /fred/series/observations`` (FRED, needs ``api_key``): series ``DCOILWTICO`` from
  ``tests/data/macro/wti-1d.csv`` (a copy of the shared file); its 290 empty cells are
  sent as FRED's ``"."``.
- ``GET /v1/metrics/{metric}`` (Glassnode, needs ``api_key``): there is no on-chain
  history in the data, so every metric serves US core CPI from
  ``tests/data/macro/core-cpi-1M.csv`` (a copy of the shared file) as ``{"t", "v"}``,
  with ``v`` set to ``null`` on the rows :func:`glassnode_null` picks (a few).

A missing or wrong ``api_key`` gets HTTP 401. Faults (:class:`Fault`) are injected per
path prefix: queued ones are consumed in order, one per request, then normal service
resumes; :meth:`FakeExchange.fail_always` fails every request until :meth:`FakeExchange.reset`.
"""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.grid import FAKE_SERIES, grid_klines, grid_klines_between
from tickbase.errors import SourceUnavailable

MACRO = Path(__file__).resolve().parent.parent / "data" / "macro"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BINANCE_INTERVALS = frozenset(
    "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M".split()  # noqa: SIM905
)
COIN_SYMBOLS = {"bitcoin": "BTCUSDT", "ethereum": "ETHUSDT"}
"""CoinGecko coin id → the symbol whose replayed sample it serves."""

LogEntry = tuple[float, str, dict[str, str]]


def glassnode_null(index: int) -> bool:
    """Whether the Glassnode stand-in sends ``null`` for CSV row ``index`` (0-based; 8 of 743)."""
    return index % 100 == 42


def fear_greed_label(value: int) -> str:
    """alternative.me's classification of an index value."""
    if value <= 25:
        return "Extreme Fear"
    if value <= 46:
        return "Fear"
    if value <= 54:
        return "Neutral"
    if value <= 75:
        return "Greed"
    return "Extreme Greed"


def read_macro(name: str) -> list[tuple[str, str]]:
    """``(date, cell)`` rows of ``tests/data/macro/<name>.csv`` (first value column; may be "")."""
    with (MACRO / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(row[0], row[1]) for row in rows[1:] if row]


def _epoch_seconds(day: str) -> int:
    return int((datetime.fromisoformat(day).replace(tzinfo=UTC) - EPOCH).total_seconds())


def _ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build with the class methods."""

    kind: Literal["respond", "delay"]
    code: int = 200
    content: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1") -> Fault:
        """HTTP 429 with ``Retry-After: <retry_after>`` (seconds or an HTTP date), or none."""
        headers = () if retry_after is None else (("Retry-After", retry_after),)
        body = json.dumps({"code": -1003, "msg": "Too many requests; the fake is rate limiting."})
        return cls("respond", 429, body.encode(), headers=headers)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (an async sleep: others are served)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def status(cls, code: int, body: str = "", content_type: str = "text/plain") -> Fault:
        """Answer HTTP ``code`` with ``body``."""
        return cls("respond", code, body.encode(), content_type)

    @classmethod
    def body(cls, text: str, content_type: str = "text/html", code: int = 200) -> Fault:
        """Answer ``text`` as ``content_type`` (an HTML error page with 200, say)."""
        return cls("respond", code, text.encode(), content_type)

    @classmethod
    def json(cls, obj: Any, code: int = 200) -> Fault:
        """Answer ``obj`` as JSON; NaN and Infinity are written as the bare tokens."""
        return cls("respond", code, json.dumps(obj, allow_nan=True).encode())


class FakeExchange:
    """The fake exchange; ``with FakeExchange() as fake:`` serves it at ``fake.url``.

    ``now`` fixes the clock of the replayed bars (``None``: the real clock), so a test can
    compare the served bars with :func:`grid_klines` at the same time. ``api_key`` is
    the one key FRED and Glassnode accept.
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        api_key: str = "fake-key-7f3a9c",
        series_for: Mapping[str, str] | None = None,
        default_series: str = "spx-1d",
    ) -> None:
        self.now = now
        self.api_key = api_key
        self.series_for = dict(FAKE_SERIES if series_for is None else series_for)
        self.default_series = default_series
        self.port = 0
        self._lock = threading.Lock()
        self._queued: dict[str, deque[Fault]] = {}
        self._always: dict[str, Fault] = {}
        self._log: list[LogEntry] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._vix = [(d, v) for d, v in read_macro("vix-1d") if v]
        self._wti = read_macro("wti-1d")
        self._cpi = read_macro("core-cpi-1M")
        self.app = Starlette(
            routes=[
                Route("/api/v3/klines", self._binance_klines),
                Route("/api/v3/coins/{coin}/ohlc", self._coingecko_ohlc),
                Route("/fng/", self._fear_greed),
                Route("/fred/series/observations", self._fred_observations),
                Route("/v1/metrics/{metric:path}", self._glassnode_metric),
            ]
        )

    # ---- control ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def inject(self, prefix: str, *faults: Fault) -> None:
        """Queue ``faults`` for requests whose path starts with ``prefix``: one per request."""
        with self._lock:
            self._queued.setdefault(prefix, deque()).extend(faults)

    def fail_always(self, prefix: str, fault: Fault) -> None:
        """Answer every request under ``prefix`` with ``fault`` until :meth:`reset`."""
        with self._lock:
            self._always[prefix] = fault

    def reset(self) -> None:
        """Drop every fault and the request log."""
        with self._lock:
            self._queued.clear()
            self._always.clear()
            self._log.clear()

    def requests(self, prefix: str = "") -> list[LogEntry]:
        """``(time.monotonic(), path, query)`` of every request under ``prefix``, in order."""
        with self._lock:
            return [entry for entry in self._log if entry[1].startswith(prefix)]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for prefix in sorted(self._queued, key=len, reverse=True):
                queue = self._queued[prefix]
                if queue and path.startswith(prefix):
                    return queue.popleft()
            for prefix in sorted(self._always, key=len, reverse=True):
                if path.startswith(prefix):
                    return self._always[prefix]
        return None

    # ---- serving ---------------------------------------------------------------------

    def __enter__(self) -> FakeExchange:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Serve on a free port of 127.0.0.1 in a background thread; return once listening."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._asgi,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ws="none",
            interface="asgi3",
            timeout_graceful_shutdown=2,
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"fake-exchange-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake exchange did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        with self._lock:
            self._log.append((time.monotonic(), path, query))
        fault = self._take_fault(path)
        if fault is not None and fault.kind == "respond":
            response = Response(
                fault.content, fault.code, dict(fault.headers), media_type=fault.content_type
            )
            await response(scope, receive, send)
            return
        if fault is not None and await _disconnected_within(fault.seconds, receive):
            return  # the client gave up waiting: nobody to answer
        await self.app(scope, receive, send)

    # ---- routes ----------------------------------------------------------------------

    def _sample(self, symbol: str) -> str:
        return self.series_for.get(symbol, self.default_series)

    async def _binance_klines(self, request: Request) -> Response:
        query = request.query_params
        symbol, interval = query.get("symbol", ""), query.get("interval", "")
        if not symbol:
            return _binance_error(-1102, "Mandatory parameter 'symbol' was not sent.")
        if interval not in BINANCE_INTERVALS:
            return _binance_error(-1120, "Invalid interval.")
        try:
            limit = min(max(int(query.get("limit", "500")), 1), 1000)
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in parameter 'limit'.")
        try:
            start, end = query.get("startTime"), query.get("endTime")
            if start is not None:
                bars = grid_klines_between(
                    self._sample(symbol),
                    interval,
                    int(start),
                    None if end is None else int(end),
                    limit,
                    self.now,
                )
            else:
                bars = grid_klines(self._sample(symbol), interval, limit, self.now)
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in parameter 'startTime'.")
        except SourceUnavailable:
            return _binance_error(-1120, f"the fake cannot replay interval {interval}")
        rows = [
            # The samples have no quote volume, trade count or taker volumes: zeros.
            [
                _ms(k.open_time),
                *(repr(x) for x in (k.open, k.high, k.low, k.close, k.volume)),
                _ms(k.close_time or k.open_time),
                *("0", 0, "0", "0", "0"),
            ]
            for k in bars
        ]
        return JSONResponse(rows)

    async def _coingecko_ohlc(self, request: Request) -> Response:
        symbol = COIN_SYMBOLS.get(request.path_params["coin"])
        if symbol is None:
            return JSONResponse({"error": "coin not found"}, 404)
        if not request.query_params.get("vs_currency"):
            return JSONResponse({"error": "Missing parameter vs_currency"}, 400)
        try:
            days = int(request.query_params.get("days", ""))
        except ValueError:
            return JSONResponse({"error": "invalid days"}, 400)
        if not 1 <= days <= 365:
            return JSONResponse({"error": "days must be 1..365"}, 400)
        # CoinGecko's automatic candle body: 1-2 days 30 min, 3-30 days 4 h, beyond 4 days.
        candle = "30m" if days <= 2 else "4h" if days <= 30 else "4d"
        size = {"30m": 1800, "4h": 14_400, "4d": 345_600}[candle]
        bars = grid_klines(self._sample(symbol), candle, days * 86_400 // size, self.now)
        rows = [
            [_ms(k.open_time) + size * 1000, k.open, k.high, k.low, k.close]  # close time
            for k in bars
        ]
        return JSONResponse(rows)

    async def _fear_greed(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "1"))
        except ValueError:
            limit = 1
        newest_first = self._vix[::-1]
        chosen = newest_first if limit <= 0 else newest_first[:limit]
        data = []
        for day, cell in chosen:
            value = round(min(max(float(cell), 0.0), 100.0))
            data.append(
                {
                    "value": str(value),
                    "value_classification": fear_greed_label(value),
                    "timestamp": str(_epoch_seconds(day)),
                }
            )
        if data:
            data[0]["time_until_update"] = "3600"
        return JSONResponse(
            {"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}
        )

    def _refuse_key(self, request: Request) -> Response | None:
        if request.query_params.get("api_key") != self.api_key:
            return JSONResponse(
                {"error_code": 401, "error_message": "Unauthorized: missing or bad api_key"}, 401
            )
        return None

    async def _fred_observations(self, request: Request) -> Response:
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        query = request.query_params
        if query.get("series_id") != "DCOILWTICO":
            return JSONResponse(
                {"error_code": 400, "error_message": "Bad Request.  The series does not exist."},
                400,
            )
        if query.get("file_type") != "json":
            return JSONResponse(
                {"error_code": 400, "error_message": "the fake only speaks file_type=json"}, 400
            )
        limit = min(max(int(query.get("limit", "100000")), 1), 100_000)
        rows = self._wti[::-1] if query.get("sort_order") == "desc" else self._wti
        today = datetime.now(UTC).date().isoformat()
        observations = [
            {"realtime_start": today, "realtime_end": today, "date": day, "value": cell or "."}
            for day, cell in rows[:limit]
        ]
        return JSONResponse(
            {
                "realtime_start": today,
                "realtime_end": today,
                "units": "lin",
                "sort_order": query.get("sort_order", "asc"),
                "count": len(rows),
                "offset": 0,
                "limit": limit,
                "observations": observations,
            }
        )

    async def _glassnode_metric(self, request: Request) -> Response:
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        if not request.query_params.get("a"):
            return JSONResponse({"error": "missing asset parameter 'a'"}, 400)
        points = [
            {"t": _epoch_seconds(day), "v": None if glassnode_null(i) else float(cell)}
            for i, (day, cell) in enumerate(self._cpi)
        ]
        return JSONResponse(points)


def _binance_error(code: int, message: str) -> Response:
    return JSONResponse({"code": code, "msg": message}, 400)


async def _disconnected_within(seconds: float, receive: Receive) -> bool:
    """Sleep ``seconds``; True (early) if the client disconnects meanwhile."""

    async def disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnect())
    try:
        await asyncio.wait_for(asyncio.shield(watcher), seconds)
    except TimeoutError:
        return False
    finally:
        watcher.cancel()
    return True
