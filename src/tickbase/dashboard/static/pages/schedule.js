// One schedule: its facts, stats, execution history (cursor paging, each
// linking to its task) and, for admins, pause/resume, enable/disable, trigger
// now and edit (?edit=1). Reloads when a `tasks` push carries one of its
// tasks (at most once per 2 s), else every 15 s.

import { api, canWrite } from "../lib/api.js";
import { Empty, ErrorNote, Json, Status, Time, html, navigate, queryParams, seconds, useLoad, withQuery } from "../lib/ui.js";
import { useRef, useState } from "../vendor/htm-preact/standalone.module.js";
import { ScheduleForm } from "./schedule_form.js";

const PAGE = 20;

export const RELOAD_GAP_MS = 2000;

export function schedulePath(name) {
  return `/schedules/${encodeURIComponent(name)}`;
}

// How a schedule fires, in words: "*/15 * * * *", "every 15 min", "manual".
export function timing(s) {
  if (s.kind === "cron") return s.cron;
  if (s.kind === "interval") return `every ${seconds(s.intervalSeconds)}`;
  return "manual (trigger only)";
}

export function StateWord({ schedule }) {
  if (!schedule.enabled) return html`<span class="muted">disabled</span>`;
  return schedule.paused ? html`<span>paused</span>` : html`<span>enabled</span>`;
}


function Facts({ schedule: s }) {
  return html`<dl class="facts">
    <dt>Kind</dt><dd>${s.kind}</dd>
    <dt>When</dt><dd class="mono">${timing(s)}</dd>
    <dt>Time zone</dt><dd>${s.timezone}</dd>
    <dt>Task type</dt><dd class="mono">${s.taskType}</dd>
    <dt>Queue</dt><dd>${s.queue} (priority ${s.priority})</dd>
    <dt>State</dt><dd><${StateWord} schedule=${s} /></dd>
    <dt>Retries</dt><dd>${s.maxRetries} (every ${seconds(s.retryInterval)})</dd>
    <dt>Timeout</dt><dd>${s.timeout ? seconds(s.timeout) : "none"}</dd>
    <dt>Misfire grace</dt><dd>${seconds(s.misfireGraceSeconds)}</dd>
    <dt>Coalesce</dt><dd>${s.coalesce ? "yes: missed fires run once" : "no"}</dd>
    <dt>Max instances</dt><dd>${s.maxInstances}</dd>
    <dt>Origin</dt><dd>${s.origin}</dd>
    ${s.description ? html`<dt>Description</dt><dd>${s.description}</dd>` : null}
    <dt>Created</dt><dd><${Time} value=${s.createdAt} /></dd>
    <dt>Updated</dt><dd><${Time} value=${s.updatedAt} /></dd>
  </dl>`;
}

function Stats({ stats }) {
  const counts = ["pending", "running", "retrying", "succeeded", "failed", "cancelled"];
  return html`<div class="panel wide">
    <h2>Stats</h2>
    <div class="grid stats">
      ${counts.map((key) => html`<div><div class="label">${key}</div><div class="figure">${stats[key]}</div></div>`)}
      <div><div class="label">average run</div><div class="figure">${seconds(stats.avgDuration)}</div></div>
      <div><div class="label">p95 run</div><div class="figure">${seconds(stats.p95Duration)}</div></div>
      <div><div class="label">last fire</div><div><${Time} value=${stats.lastFireAt} /></div></div>
      <div><div class="label">next fire</div><div><${Time} value=${stats.nextFireAt} /></div></div>
    </div>
  </div>`;
}

function Executions({ page, path, cursor }) {
  return html`<div class="panel wide">
    <h2>Executions</h2>
    ${page.items.length
      ? html`<table aria-label="Executions, newest fire first">
          <thead><tr>
            <th scope="col">Fire at</th><th scope="col" class="num">Task</th><th scope="col">Status</th>
            <th scope="col" class="num">Attempts</th><th scope="col">Started</th><th scope="col">Run time</th><th scope="col">Fired by</th>
          </tr></thead>
          <tbody>${page.items.map(
            (e) => html`<tr key=${e.id} data-task-id=${e.id}>
              <td><${Time} value=${e.fireAt} /></td>
              <td class="num"><a href=${`/tasks/${e.id}`}>${e.id}</a></td>
              <td><${Status} value=${e.status} /></td>
              <td class="num">${e.attempts}</td>
              <td><${Time} value=${e.startedAt} /></td>
              <td>${seconds(e.duration)}</td>
              <td>${e.manual ? "hand (trigger)" : "schedule"}</td>
            </tr>`,
          )}</tbody>
        </table>`
      : html`<${Empty}>${cursor ? "No older execution." : "No execution yet: it runs at its next fire, or use Trigger now."}<//>`}
    <div class="pager">
      ${cursor ? html`<a href=${path}>Newest</a>` : null}
      ${page.nextCursor ? html`<a href=${withQuery(path, { cursor: page.nextCursor })}>Older →</a>` : null}
    </div>
  </div>`;
}

const DONE = { pause: "Paused.", resume: "Resumed.", enable: "Enabled.", disable: "Disabled." };

function Actions({ schedule, onChanged }) {
  const [notice, setNotice] = useState(null);
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const path = `schedules/${encodeURIComponent(schedule.name)}`;
  const act = async (action) => {
    setBusy(true);
    setNotice(null);
    setFailure(null);
    try {
      const answer = await api(`${path}/${action}`, { method: "POST" });
      setNotice(
        action === "trigger"
          ? html`Fired: <a href=${`/tasks/${answer.taskId}`}>task ${answer.taskId}</a> at <${Time} value=${answer.fireAt} />.`
          : DONE[action],
      );
      await onChanged();
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  };
  const button = (action, label, cls = "") =>
    html`<button class=${cls} disabled=${busy} onClick=${() => act(action)}>${label}</button>`;
  return html`<div class="actions" role="group" aria-label="Schedule actions">
      ${button("trigger", "Trigger now", "primary")}
      ${schedule.paused ? button("resume", "Resume") : button("pause", "Pause")}
      ${schedule.enabled ? button("disable", "Disable", "danger") : button("enable", "Enable")}
      <a class="button" href=${withQuery(schedulePath(schedule.name), { edit: 1 })}>Edit</a>
    </div>
    <div class="feedback" aria-live="polite">${notice ? html`<div class="banner info">${notice}</div>` : null}</div>
    <${ErrorNote} error=${failure} />`;
}

export function Schedule({ name }) {
  const params = queryParams();
  const cursor = params.cursor || "";
  const path = schedulePath(name);
  const idRef = useRef(null);
  const enc = encodeURIComponent(name);
  const { data, error, reload } = useLoad(
    async () => {
      const [schedule, stats, executions] = await Promise.all([
        api(`schedules/${enc}`),
        api(`schedules/${enc}/stats`),
        api(`schedules/${enc}/executions`, { query: { cursor, limit: PAGE } }),
      ]);
      return { schedule, stats, executions };
    },
    [name, cursor],
    {
      channels: ["tasks"],
      minGapMs: RELOAD_GAP_MS,
      // Reload only when one of this schedule's tasks changed.
      onPush: (content) => idRef.current !== null && content.tasks.some((t) => t.scheduleId === idRef.current),
    },
  );
  if (!data) {
    return error
      ? html`<h1>Schedule ${name}</h1><${ErrorNote} error=${error} /><p><a href="/schedules">All schedules</a></p>`
      : html`<p class="muted">Loading schedule ${name}…</p>`;
  }
  const { schedule, stats, executions } = data;
  idRef.current = schedule.id;
  const writer = canWrite();
  const editing = writer && params.edit;
  return html`
    <p class="crumbs"><a href="/schedules">Schedules</a> /</p>
    <h1>Schedule ${schedule.name} <${Status} value=${schedule.status} /></h1>
    <${ErrorNote} error=${error} />
    ${writer && !editing ? html`<${Actions} schedule=${schedule} onChanged=${reload} />` : null}
    ${editing
      ? html`<${ScheduleForm} schedule=${schedule} cancelHref=${path}
          onDone=${async () => { navigate(path); await reload(); }} />`
      : null}
    <div class="grid" style="margin-top:12px">
      <div class="wide pair">
        <div class="panel"><h2>Facts</h2><${Facts} schedule=${schedule} /></div>
        <div class="panel"><h2>Payload</h2><${Json} value=${schedule.payload} /></div>
      </div>
      <${Stats} stats=${stats} />
      <${Executions} page=${executions} path=${path} cursor=${cursor} />
    </div>`;
}
