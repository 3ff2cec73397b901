"""Benchmark machinery behind ``tickbase bench queue``.

The package measures four queue workloads (single enqueue, batch enqueue, drain by one
worker process, enqueue-to-start latency) for tickbase and, optionally, for peer queues
(PgQueuer, Procrastinate and a plain ``FOR UPDATE SKIP LOCKED`` loop), all against the
same PostgreSQL server and each workload in a fresh database.

- :mod:`tickbase.bench.harness`: the :class:`~tickbase.bench.harness.QueueAdapter`
  protocol and the orchestrator :func:`~tickbase.bench.harness.run_queue_bench`.
- :mod:`tickbase.bench.peers`: adapters (and worker entry points) for the peers.
- :mod:`tickbase.bench.render`: Rich tables and the one-line JSON output.
"""
