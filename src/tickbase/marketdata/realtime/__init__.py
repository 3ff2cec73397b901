"""The real-time K-line pipeline (issue 17): trades in, live and final K-lines out.

This package holds the pure, process-local parts, fast enough for one shard worker to
keep up with a busy symbol:

- ``trades.py``: trade batches as numpy columns, the Binance aggTrade frame parser and the
  replay-file reader, with bad input counted per reason (``BadInput``) and skipped;
- ``kline.py``: the live K-line (Binance's kline fields, times in epoch milliseconds);
- ``aggregator.py``: per (symbol, interval) aggregation with a lateness window, a
  vectorised batch path and the per-trade reference path;
- ``bench.py``: ``aggregation_rate()``, the aggregation micro benchmark.

The shard worker processes, the pulling loop, snapshots and the writer build on these.
"""
