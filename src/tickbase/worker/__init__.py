"""The worker block: task registry, handler runner (eager start, timeouts) and
the worker loop (batched claims and reports, heartbeats, graceful stop)."""
