"""The worker block: task registry, the worker (:mod:`~tickbase.worker.worker`)
and its parts: fetching (batched claims), execution (handlers, timeouts,
heartbeats, graceful stop) and reporting (batched outcomes)."""
