"""The real-time K-line pipeline (issue 17): trades → shards → pulling loop → readers, writer.

The process-local parts, fast enough for one shard worker to keep up with a busy symbol:

- ``trades.py``: trade batches as numpy columns, the Binance aggTrade frame parser and the
  replay-file reader, with bad input counted per reason (``BadInput``) and skipped;
- ``kline.py``: the live K-line (Binance's kline fields, times in epoch milliseconds);
- ``aggregator.py``: per (symbol, interval) aggregation with a lateness window, a
  vectorised batch path and the per-trade reference path;
- ``bench.py``: ``aggregation_rate()``, the aggregation micro benchmark;
- ``binance_stream.py``: :class:`BinanceTradeStream`, Binance's live aggTrade stream as
  trade batches and :class:`TradeGap` events (reconnecting with backoff and jitter);
- ``backfill.py``: :class:`GapBackfill`, the bars a gap touched fetched again from the REST
  klines once final, stored marked backfilled;
- ``stream_bench.py``: ``ingest_rate()``, the WebSocket ingest benchmark over 127.0.0.1.

And how they are put together:

- ``shard.py``: a shard worker process (:class:`ProcessShard`) keeping a :class:`ChangeLog`;
- ``loop.py``: the :class:`PullingLoop` pulls every shard's changes each period, with a
  timeout and a :class:`CircuitBreaker` per shard, and publishes one :class:`Snapshot`
  on a :class:`LatestValue` channel;
- ``reader.py``: the :class:`SerialReader` calls registered handlers one at a time;
- ``writer.py``: the :class:`BarWriter` (bounded, coalescing, never blocking) and
  :class:`FinalBars` (final bars offered again until written).
"""

from tickbase.marketdata.realtime.changes import ChangeLog
from tickbase.marketdata.realtime.channel import LatestValue
from tickbase.marketdata.realtime.circuit import CircuitBreaker, CircuitState
from tickbase.marketdata.realtime.loop import PullingLoop, Shard, Snapshot
from tickbase.marketdata.realtime.reader import SerialReader

__all__ = [
    "ChangeLog",
    "CircuitBreaker",
    "CircuitState",
    "LatestValue",
    "PullingLoop",
    "SerialReader",
    "Shard",
    "Snapshot",
]
