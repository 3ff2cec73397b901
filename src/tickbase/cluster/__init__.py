"""The cluster block: what makes several processes one system.

Nodes and their heartbeats (``tickbase.nodes``, ``nodes.py``), leases with
fencing tokens and the leader election (``tickbase.leases``, ``lease.py``,
``election.py``), the leader's housekeeping (reap dead nodes, rescue their
tasks, reconcile workflows, evaluate alerts: ``housekeeping.py``), the
cluster's figures (``metrics.py``) and alerts with their webhooks
(``alerts/``). It owns ``tickbase.nodes``, ``tickbase.leases`` and the alert
tables; tasks it rescues change through the queue's statements.
"""
