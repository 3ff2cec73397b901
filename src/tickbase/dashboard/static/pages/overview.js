// Overview: throughput per minute, backlog and running per queue, failures,
// nodes and the leader, schedule lag. Pushed on the `stats` channel (the same
// figures for every dashboard, computed once per gateway process).

import { api } from "../lib/api.js";
import { Empty, ErrorNote, Time, html, seconds, useLoad } from "../lib/ui.js";

function byQueue(tasks) {
  const queues = new Map();
  for (const { queue, status, count } of tasks) {
    const row = queues.get(queue) || { queue, pending: 0, running: 0, retrying: 0, failed: 0, succeeded: 0 };
    row[status] = (row[status] || 0) + count;
    queues.set(queue, row);
  }
  return [...queues.values()];
}

// The last 60 minutes, one slot each (a minute nothing finished in is an empty slot).
function lastHour(minutes) {
  const byMinute = new Map(minutes.map((m) => [Date.parse(m.minute), m]));
  const now = Math.floor(Date.now() / 60000) * 60000;
  const slots = [];
  for (let i = 59; i >= 0; i--) {
    const at = now - i * 60000;
    slots.push(byMinute.get(at) || { minute: new Date(at).toISOString(), succeeded: 0, failed: 0, cancelled: 0 });
  }
  return slots;
}

function Throughput({ minutes: finished }) {
  if (!finished.length) return html`<${Empty}>No task finished in the last hour.<//>`;
  const minutes = lastHour(finished);
  const peak = Math.max(...minutes.map((m) => m.succeeded + m.failed + m.cancelled), 1);
  const total = minutes.reduce((n, m) => n + m.succeeded + m.failed + m.cancelled, 0);
  return html`
    <div class="bars" role="img" aria-label=${`${total} tasks finished in the last hour, at most ${peak} in one minute`}>
      ${minutes.map(
        (m) => html`<span
          class=${m.failed > m.succeeded ? "failed" : ""}
          style=${`height:${(100 * (m.succeeded + m.failed + m.cancelled)) / peak}%`}
          title=${`${new Date(m.minute).toLocaleTimeString()}: ${m.succeeded} succeeded, ${m.failed} failed, ${m.cancelled} cancelled`}
        ></span>`,
      )}
    </div>
    <p class="label">Per minute over the last hour; peak ${peak}/min. Hover a bar for its minute.</p>`;
}

function Figure({ label, value, hint, tone }) {
  return html`<div class="panel">
    <div class="label">${label}</div>
    <div class=${`figure ${tone || ""}`}>${value}</div>
    ${hint ? html`<div class="label">${hint}</div>` : null}
  </div>`;
}

export function Overview() {
  const { data, error, loading } = useLoad(() => api("dashboard/overview"), [], {
    channels: ["stats"],
    onPush: (content, setState) => {
      setState({ data: content, error: null, loading: false });
      return false;
    },
  });
  if (loading && !data) return html`<p class="muted">Loading the cluster's figures…</p>`;
  if (!data) return html`<${ErrorNote} error=${error} />`;
  const { stats, throughput } = data;
  const estimated = stats.tasksEstimated ? " (finished counts estimated from a sample)" : "";
  const queues = byQueue(stats.tasks);
  return html`
    <h1>Overview</h1>
    <${ErrorNote} error=${error} />
    <div class="grid">
      <${Figure} label="Finished in the last minute" value=${stats.finishedLastMinute}
        hint=${`${stats.throughputPerS.toFixed(2)} per second`} />
      <${Figure} label="Backlog (due, waiting)" value=${stats.backlog}
        hint=${stats.oldestDueSeconds ? `oldest due ${seconds(stats.oldestDueSeconds)} ago` : "nothing waits"} />
      <${Figure} label="Failed in the last hour" value=${stats.failedLastHour} />
      <${Figure} label="Nodes alive" value=${stats.nodesAlive} hint=${stats.leader ? `leader ${stats.leader}` : "no leader"} />
      <${Figure} label="Schedule lag" value=${seconds(stats.scheduleLagSeconds ?? 0)}
        hint="how late the most overdue schedule is" />
      <${Figure} label="No worker for" value=${stats.noWorker}
        hint=${stats.noWorker ? stats.noWorkerByType.map((u) => `${u.taskType} (${u.queue})`).join(", ") : "every due task has a worker"} />
      <${Figure} label="Start latency p50 / p95" value=${`${seconds(stats.latencySeconds.p50)} / ${seconds(stats.latencySeconds.p95)}`}
        hint="from due to started, last 5 minutes" />
      <div class="panel wide">
        <h2>Open alerts</h2>
        ${data.openAlerts && data.openAlerts.length
          ? html`<ul class="alerts-open">${data.openAlerts.map(
              (a) => html`<li><span class="status failed">${a.rule}</span> ${a.message} <span class="muted">since <${Time} value=${a.firedAt} /></span></li>`,
            )}</ul>
            <a href="/alerts?state=firing">All firing alerts</a>`
          : html`<p class="muted">No alert is firing.</p>`}
      </div>
      <div class="panel wide">
        <h2>Throughput</h2>
        <${Throughput} minutes=${throughput} />
      </div>
      <div class="panel wide">
        <h2>Queues${estimated}</h2>
        ${queues.length
          ? html`<table>
              <thead><tr><th scope="col">Queue</th><th scope="col" class="num">Pending</th><th scope="col" class="num">Retrying</th>
                <th scope="col" class="num">Running</th><th scope="col" class="num">Failed</th><th scope="col" class="num">Succeeded</th></tr></thead>
              <tbody>${queues.map(
                (q) => html`<tr>
                  <td><a href=${`/tasks?queue=${encodeURIComponent(q.queue)}`}>${q.queue}</a></td>
                  <td class="num">${q.pending}</td><td class="num">${q.retrying}</td><td class="num">${q.running}</td>
                  <td class="num"><a href=${`/tasks?queue=${encodeURIComponent(q.queue)}&status=failed`}>${q.failed}</a></td>
                  <td class="num">${q.succeeded}</td>
                </tr>`,
              )}</tbody>
            </table>`
          : html`<${Empty}>No tasks yet. Enqueue one: <code>tickbase enqueue tickbase.health_check</code><//>`}
      </div>
    </div>`;
}
