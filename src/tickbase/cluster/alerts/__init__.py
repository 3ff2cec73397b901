"""Alerts: rules over the cluster's figures that fire once, resolve once, and notify.

Overview
    A rule (``tickbase.alert_rules``) names a condition kind and its limits:

    ===================  =============================================  ==========================
    kind                 holds while                                    subject
    ===================  =============================================  ==========================
    failures_last_hour   tasks failed for good in the last hour > N     ``''``
    backlog              tasks due and waiting for a worker > N         ``''``
    node_down            a node stopped heartbeating (silent for N s,   the node id
                         default three of its own intervals)
    leader_missing       no live ``leader`` lease                       ``''``
    schedule_lag         the most overdue schedule is late by > N s     ``''``
    data_completeness    a collected series is < N % complete          ``'<symbol> <interval>'``
    no_worker_for_type   > N due tasks of a type no live worker runs    the task type
    realtime_circuit_    a real-time shard's circuit is open (alive     ``'<node> <shard>'``
    open                 nodes' heartbeat metrics, ``realtime``)
    realtime_loop_slow   the pulling loop's p99 > N ms (default: the    the node id
                         node's period, 100 ms)
    realtime_writer_     > N bars dropped by the writer since the       the node id
    drops                node's previous heartbeat
    ===================  =============================================  ==========================

    The migration seeds one rule of each kind (failures > 5, backlog > 100 for
    5 minutes, node down, leader missing for 30 s, schedule lag > 60 s);
    :class:`AlertStore` (and ``tickbase alerts rule``) changes their limits.

    :func:`evaluate_alerts` runs one pass inside the caller's transaction: the
    cluster leader's housekeeping evaluates every rule, and every node checks
    ``leader_missing`` from its heartbeat, because a missing leader cannot
    report its own absence.

State model
    Per (rule, subject): *clear* → *pending* (a row in ``alert_pending`` with
    the time the condition began) → *firing* (a row in ``alerts``, once the
    condition has held ``for_seconds``) → *resolved* (the same row, when the
    condition clears; a later recurrence is a new row). A disabled rule's
    firing alerts resolve. Each change (fired, resolved) is logged here,
    announced with ``NOTIFY tickbase_alerts`` (the gateway's ``alert``
    channel), and queued once per enabled webhook in ``alert_deliveries``.

Failure cases
    Evaluators racing on the same incident: the partial unique index on
    firing (rule, subject) lets one insert through; the others change nothing,
    queue nothing and notify nothing. A resolution is a guarded update, so it
    too happens once. A node that is killed is reaped by the leader's
    housekeeping within seconds, usually before any evaluation sees it silent: a
    trigger records reaped nodes in ``lost_nodes`` so that ``node_down`` still
    fires; that alert resolves when the node heartbeats again, or after a day.
    A crash between a change and its webhook POST loses nothing: the outbox
    row was written in the same transaction, and :class:`AlertNotifier`
    retries with exponential backoff until it gives up after ``max_attempts``
    and records the last error. Delivery is at least once; receivers dedupe on
    the ``X-Tickbase-Delivery`` header.

Modules
    :mod:`~tickbase.cluster.alerts.rules` holds the rules and their store
    (:class:`AlertStore`), :mod:`~tickbase.cluster.alerts.evaluation` one
    evaluation pass (:func:`evaluate_alerts`), and
    :mod:`~tickbase.cluster.alerts.webhooks` the outbox delivery
    (:class:`AlertNotifier`). The statements stay in ``cluster/alerts.sql``,
    shared by the three.
"""

from __future__ import annotations

from tickbase.cluster.alerts.evaluation import ALERTS_CHANNEL, AlertChange, evaluate_alerts
from tickbase.cluster.alerts.rules import ALERT_KINDS, Alert, AlertRule, AlertStore
from tickbase.cluster.alerts.webhooks import (
    AlertNotifier,
    AlertWebhook,
    check_webhook_url,
    display_url,
    origin,
)

__all__ = [
    "ALERTS_CHANNEL",
    "ALERT_KINDS",
    "Alert",
    "AlertChange",
    "AlertNotifier",
    "AlertRule",
    "AlertStore",
    "AlertWebhook",
    "check_webhook_url",
    "display_url",
    "evaluate_alerts",
    "origin",
]
