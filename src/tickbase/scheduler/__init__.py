"""The scheduler block: ``tickbase.schedules`` and ``tickbase.schedule_events``.

Owns cron/interval/manual triggers (croniter semantics, a DST policy of its
own), the firing policy (misfire grace, coalesce, max instances) and the
leader-elected ticker that enqueues each fire exactly once.
"""
