"""The real-time K-line pipeline (issue 17): trades → shards → pulling loop → readers.

Shard workers aggregate trades into bars and keep a :class:`ChangeLog`; the
:class:`PullingLoop` pulls their changes every period with a timeout and a
:class:`CircuitBreaker` per shard, applies them to one state and publishes a
:class:`Snapshot` on a :class:`LatestValue` channel; a :class:`SerialReader`
calls the registered handlers with each snapshot, one at a time.
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
