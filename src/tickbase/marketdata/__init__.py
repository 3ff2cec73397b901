"""Market data: collectors with fallbacks, cleaning, storage and indicators.

Sources in their real wire formats (``sources/``) behind one interface and
failure policy (``collector.py``), the offline replay of real recorded series
(``replay.py``), cleaning rules (``cleaning.py``), the K-line and observation
stores (``store.py``, owning ``tickbase.klines``, ``tickbase.observations``,
``tickbase.market_cache``, ``tickbase.series_integrity``), incremental and
TA-Lib indicators (``indicators/``, ``state.py``), chart resolutions built by
aggregation (``resample.py``), instrument descriptions for the UDF datafeed
(``instruments.py``) and the tasks and schedules that run it all
(``pipeline.py``).
"""
