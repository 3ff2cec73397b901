"""The queue block: ``tickbase.tasks`` and ``tickbase.task_events``.

Owns enqueue (single and batch, dedupe keys), claiming with ``FOR UPDATE SKIP
LOCKED``, the guarded state transitions of ``states.py``, leases and rescue.
"""
