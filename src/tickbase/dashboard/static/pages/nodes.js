// Nodes: every registered node, its roles, heartbeat age and metrics; the
// leader and its fencing token (the `leader` lease).
//
// The rows are re-read at most every NODES_EVERY_MS while `stats` pushes
// arrive (or every 15 s when polling): the nodes table is small and the page
// costs one read per few seconds however often the figures are pushed. The
// heartbeat ages tick every second in the browser from the age the database
// reported (its clock, not the browser's).

import { api } from "../lib/api.js";
import { Empty, ErrorNote, Time, html, seconds, useLoad, useNow } from "../lib/ui.js";

const NODES_EVERY_MS = 5000;

function bytes(value) {
  if (value === null || value === undefined) return "—";
  if (value < 2 ** 20) return `${(value / 1024).toFixed(0)} KiB`;
  if (value < 2 ** 30) return `${(value / 2 ** 20).toFixed(1)} MiB`;
  return `${(value / 2 ** 30).toFixed(2)} GiB`;
}

function number(value, digits = 0) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

function Heartbeat({ node, readAt, now }) {
  const age = (node.heartbeatAgeSeconds ?? (readAt - Date.parse(node.heartbeatAt)) / 1000) + (now - readAt) / 1000;
  const late = age > 2 * node.heartbeatInterval;
  const text = `${seconds(Math.max(age, 0))} ago`;
  return html`<span class=${late ? "heartbeat late" : "heartbeat"} title=${`every ${node.heartbeatInterval} s; last at ${node.heartbeatAt}`}>
    ${late ? html`<span class="status retrying">late</span> ` : null}${text}
  </span>`;
}

function Leader({ leader }) {
  if (!leader || !leader.holder)
    return html`<div class="banner warn" role="note">No node has ever held the leader lease: start a node with the
      scheduler role (<code>tickbase up</code> or <code>tickbase run --scheduler</code>).</div>`;
  return html`<div class="panel leader-panel">
    <h2>Leader</h2>
    <dl class="facts">
      <dt>Holder</dt><dd class="mono">${leader.holder}${leader.live ? null : html` <span class="status failed">expired</span>`}</dd>
      <dt>Fencing token</dt><dd class="mono" data-testid="fencing-token">${leader.token}</dd>
      <dt>Since</dt><dd><${Time} value=${leader.acquiredAt} /></dd>
      <dt>Lease until</dt><dd><${Time} value=${leader.expiresAt} /></dd>
    </dl>
    ${leader.live ? null : html`<p class="muted">The lease has expired: no node leads now. A node with the scheduler role takes it over.</p>`}
  </div>`;
}

export function Nodes() {
  const now = useNow();
  const { data, error, loading } = useLoad(
    async () => {
      const [nodes, leader] = await Promise.all([api("nodes"), api("cluster/leader")]);
      return { nodes, leader, readAt: Date.now() };
    },
    [],
    { channels: ["stats"], minGapMs: NODES_EVERY_MS },
  );
  if (!data) return html`<h1>Nodes</h1>${error ? html`<${ErrorNote} error=${error} />` : html`<p class="muted">Loading nodes…</p>`}`;
  const { nodes, leader, readAt } = data;
  return html`
    <h1>Nodes</h1>
    <${ErrorNote} error=${error} />
    <${Leader} leader=${leader} />
    ${loading && !nodes.length
      ? null
      : nodes.length
        ? html`<table aria-label="Nodes, oldest first">
            <thead><tr>
              <th scope="col">Node</th><th scope="col">Roles</th><th scope="col">Host</th><th scope="col">Heartbeat</th>
              <th scope="col" class="num">Running</th><th scope="col" class="num">Processed</th>
              <th scope="col" class="num">CPU %</th><th scope="col" class="num">Memory</th><th scope="col">Queues</th>
              <th scope="col">Version</th><th scope="col">Started</th>
            </tr></thead>
            <tbody>${nodes.map(
              (n) => html`<tr key=${n.nodeId} data-node-id=${n.nodeId} class=${n.alive ? "" : "dead"}>
                <th scope="row" class="mono">${n.nodeId}
                  ${n.leader ? html` <span class="status leader" title=${`fencing token ${leader ? leader.token : "?"}`}>leader</span>` : null}
                  ${n.alive ? null : html` <span class="status failed">dead</span>`}
                </th>
                <td>${n.roles.length ? n.roles.map((r) => html`<span class="role">${r}</span> `) : html`<span class="muted">none</span>`}</td>
                <td>${n.host} <span class="muted">pid ${n.pid}</span></td>
                <td><${Heartbeat} node=${n} readAt=${readAt} now=${now} /></td>
                <td class="num">${number(n.metrics.runningTasks)}</td>
                <td class="num">${number(n.metrics.processed)}</td>
                <td class="num">${number(n.metrics.cpuPercent, 1)}</td>
                <td class="num">${bytes(n.metrics.rssBytes)}</td>
                <td>${n.queues ? n.queues.join(", ") : html`<span class="muted">all</span>`}</td>
                <td class="mono">${n.version}</td>
                <td><${Time} value=${n.startedAt} /></td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>No node is registered. Start one with <code>tickbase up</code> (or <code>tickbase run</code>).<//>`}
    <p class="label">A heartbeat older than two of the node's intervals is marked late; silent for three, the node is dead and the leader reaps it.</p>`;
}
