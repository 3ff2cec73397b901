// One task: its facts, event timeline, result or error with traceback; retry and cancel.

import { api, canWrite } from "../lib/api.js";
import { ErrorNote, Json, Status, Time, duration, html, navigate, useLoad } from "../lib/ui.js";
import { useState } from "../vendor/htm-preact/standalone.module.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);

function Failure({ error }) {
  if (!error) return null;
  return html`<div class="panel wide">
    <h2>Error</h2>
    <p><strong>${error.type || "Error"}</strong>: ${error.message}</p>
    ${error.traceback ? html`<details open><summary>Traceback</summary><pre>${error.traceback}</pre></details>` : null}
  </div>`;
}

export function Task({ id }) {
  const [actionError, setActionError] = useState(null);
  const { data, error, reload } = useLoad(
    async () => {
      const [task, events] = await Promise.all([api(`tasks/${id}`), api(`tasks/${id}/events`)]);
      return { task, events };
    },
    [id],
    {
      channels: ["tasks"],
      // Reload only when this task is among the changed ones.
      onPush: (content) => content.tasks.some((t) => t.id === Number(id)),
    },
  );
  if (!data) return error ? html`<${ErrorNote} error=${error} />` : html`<p class="muted">Loading task ${id}…</p>`;
  const { task, events } = data;
  const act = async (action) => {
    setActionError(null);
    try {
      const done = await api(`tasks/${id}/${action}`, { method: "POST" });
      if (action === "retry") navigate(`/tasks/${done.id}`);
      else reload();
    } catch (failure) {
      setActionError(failure);
    }
  };
  const writer = canWrite();
  return html`
    <h1>Task ${task.id} <${Status} value=${task.status} /></h1>
    <${ErrorNote} error=${error || actionError} />
    ${writer
      ? html`<div class="actions" role="group" aria-label="Task actions">
          ${!FINAL.has(task.status) ? html`<button class="danger" onClick=${() => act("cancel")}>Cancel</button>` : null}
          ${task.status === "failed" || task.status === "cancelled"
            ? html`<button class="primary" onClick=${() => act("retry")}>Retry as a new task</button>`
            : null}
        </div>`
      : null}
    ${task.waiting ? html`<div class="banner warn">Waiting: ${task.waiting}</div>` : null}
    <div class="grid" style="margin-top:12px">
      <div class="panel wide">
        <dl class="facts">
          <dt>Type</dt><dd class="mono">${task.taskType}</dd>
          <dt>Queue</dt><dd>${task.queue} (priority ${task.priority})</dd>
          <dt>Attempts</dt><dd>${task.attempts} of ${task.maxAttempts}</dd>
          <dt>Created</dt><dd><${Time} value=${task.createdAt} /></dd>
          <dt>Run at</dt><dd><${Time} value=${task.runAt} /></dd>
          <dt>Started</dt><dd><${Time} value=${task.startedAt} /></dd>
          <dt>Finished</dt><dd><${Time} value=${task.finishedAt} /> (${duration(task.startedAt, task.finishedAt)})</dd>
          <dt>Node</dt><dd>${task.nodeId || "—"}</dd>
          ${task.scheduleId ? html`<dt>Schedule</dt><dd>${task.scheduleId}</dd>` : null}
          ${task.workflowRunId
            ? html`<dt>Workflow run</dt><dd><a href=${`/runs/${task.workflowRunId}`}>${task.workflowRunId}</a> step ${task.step}</dd>`
            : null}
          ${task.concurrencyKey ? html`<dt>Concurrency key</dt><dd>${task.concurrencyKey}</dd>` : null}
          ${task.dedupeKey ? html`<dt>Dedupe key</dt><dd>${task.dedupeKey}</dd>` : null}
        </dl>
      </div>
      ${task.progress !== null && task.progress !== undefined
        ? html`<div class="panel wide"><h2>Progress</h2><${Json} value=${task.progress} /></div>`
        : null}
      <${Failure} error=${task.error} />
      <div class="wide pair">
        <div class="panel"><h2>Payload</h2><${Json} value=${task.payload} /></div>
        <div class="panel"><h2>Result</h2><${Json} value=${task.result} /></div>
      </div>
      <div class="panel wide">
        <h2>Timeline</h2>
        <ol class="timeline">
          <li class="created"><strong>created</strong> <${Time} value=${task.createdAt} /></li>
          ${events.map(
          (e) => html`<li class=${e.event}>
            <strong>${e.event}</strong> <${Time} value=${e.at} />${e.nodeId ? html` on ${e.nodeId}` : null}
            ${e.detail ? html`<details><summary>detail</summary><${Json} value=${e.detail} /></details>` : null}
          </li>`,
          )}
        </ol>
      </div>
    </div>`;
}
