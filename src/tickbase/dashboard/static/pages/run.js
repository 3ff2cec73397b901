// One workflow run: its DAG with live step states and timings, the critical
// path, what a waiting step waits for, and cancel for admins.
//
// Live: a `tasks` push that carries a task of this run is applied to its step
// at once (state and timings), then the run is re-read (at most once per
// 500 ms) for what the push cannot say: the steps it released, the run's end.

import { api, canWrite } from "../lib/api.js";
import { Dag, MAX_DRAWN, criticalPath, stepSeconds, stepState, waitsFor } from "../lib/dag.js";
import { Empty, ErrorNote, Status, Time, html, seconds, useLoad, useNow } from "../lib/ui.js";
import { useEffect, useState } from "../vendor/htm-preact/standalone.module.js";

const TASK_FINAL = new Set(["succeeded", "failed", "cancelled"]);

// A pushed task summary applied to its step.
function applyPush(run, changed) {
  const byStep = new Map(changed.map((t) => [t.step, t]));
  const steps = run.steps.map((step) => {
    const task = byStep.get(step.name);
    if (!task || (step.taskId && step.taskId !== task.id)) return step;
    return {
      ...step,
      taskId: task.id,
      taskStatus: task.status,
      status: TASK_FINAL.has(task.status) ? task.status : "enqueued",
      attempts: task.attempts,
      startedAt: task.startedAt,
      finishedAt: task.finishedAt,
    };
  });
  return { ...run, steps };
}

// Why a queued task is not claimed (GET /api/v1/tasks/{id}'s `waiting`), read
// only for the step a person selected.
function TaskWaiting({ taskId }) {
  const [reason, setReason] = useState(null);
  useEffect(() => {
    let live = true;
    api(`tasks/${taskId}`)
      .then((task) => live && setReason(task.waiting || null))
      .catch(() => live && setReason(null));
    return () => {
      live = false;
    };
  }, [taskId]);
  return reason ? html`<p class="banner warn">Its task waits: ${reason}</p>` : null;
}

function StepDetail({ step, byName, run, now, onPath }) {
  const state = stepState(step);
  const waits = waitsFor(step, byName, run);
  return html`<section class="panel step-detail" aria-labelledby="step-detail-title" aria-live="polite">
    <h2 id="step-detail-title">Step ${step.name} <${Status} value=${state} /></h2>
    ${waits ? html`<p class="waits">This step ${waits}.</p>` : null}
    ${(state === "pending" || state === "retrying") && step.taskId ? html`<${TaskWaiting} taskId=${step.taskId} key=${step.taskId} />` : null}
    <dl class="facts">
      <dt>Task</dt>
      <dd>${step.taskId ? html`<a href=${`/tasks/${step.taskId}`}>Task ${step.taskId}</a>` : html`<span class="muted">none yet</span>`}</dd>
      <dt>Task type</dt><dd class="mono">${step.taskType || "—"}</dd>
      <dt>Runs after</dt><dd>${step.after && step.after.length ? step.after.join(", ") : html`<span class="muted">nothing (a first step)</span>`}</dd>
      <dt>Started</dt><dd><${Time} value=${step.startedAt} /></dd>
      <dt>Finished</dt><dd><${Time} value=${step.finishedAt} /></dd>
      <dt>Duration</dt><dd>${seconds(stepSeconds(step, now))}</dd>
      ${step.attempts ? html`<dt>Attempts</dt><dd>${step.attempts}</dd>` : null}
      <dt>Critical path</dt><dd>${onPath ? "on it" : "not on it"}</dd>
    </dl>
  </section>`;
}

export function Run({ id }) {
  const runId = Number(id);
  const [selected, setSelected] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const { data: run, error, reload } = useLoad(() => api(`runs/${id}`), [id], {
    channels: ["tasks"],
    minGapMs: 500,
    onPush: (content, setState) => {
      const mine = content.tasks.filter((t) => t.workflowRunId === runId);
      if (!mine.length) return false;
      setState((old) => (old.data ? { ...old, data: applyPush(old.data, mine) } : old));
      return true;
    },
  });
  const now = useNow(1000, Boolean(run && run.status === "running"));
  if (!run) return error ? html`<${ErrorNote} error=${error} />` : html`<p class="muted">Loading run ${id}…</p>`;
  const byName = new Map(run.steps.map((s) => [s.name, s]));
  const critical = criticalPath(run.steps, now);
  const chosen = selected && byName.get(selected);
  const cancel = async () => {
    setActionError(null);
    setBusy(true);
    try {
      await api(`runs/${id}/cancel`, { method: "POST" });
      await reload();
    } catch (failure) {
      setActionError(failure);
    } finally {
      setBusy(false);
    }
  };
  const counts = {};
  for (const step of run.steps) counts[stepState(step)] = (counts[stepState(step)] || 0) + 1;
  const end = run.finishedAt ? Date.parse(run.finishedAt) : now;
  return html`
    <h1>Run ${run.id} of <a href=${`/workflows/${encodeURIComponent(run.workflow)}`}>${run.workflow}</a> <${Status} value=${run.status} /></h1>
    <${ErrorNote} error=${error || actionError} />
    ${canWrite() && run.status === "running"
      ? html`<div class="actions" role="group" aria-label="Run actions">
          <button class="danger" disabled=${busy} onClick=${cancel}>Cancel run</button>
        </div>`
      : null}
    <div class="panel run-facts">
      <dl class="facts">
        <dt>Started</dt><dd><${Time} value=${run.startedAt} /></dd>
        <dt>Finished</dt><dd><${Time} value=${run.finishedAt} /> (${seconds(run.startedAt ? (end - Date.parse(run.startedAt)) / 1000 : null)})</dd>
        <dt>Mode</dt><dd>${run.mode || "—"}${run.maxParallel ? `, at most ${run.maxParallel} at once` : ""}; on failure: ${run.onFailure || "—"}</dd>
        <dt>Steps</dt><dd>${Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(", ")}</dd>
        <dt>Critical path</dt>
        <dd class="critical-path">${critical.order.length
          ? html`${critical.order.join(" → ")} (${seconds(critical.seconds)}; computed in the browser from the steps' timings)`
          : html`<span class="muted">none yet: no step has run</span>`}</dd>
      </dl>
    </div>
    <p class="muted dag-hint">Select a step (click, or Tab to it and press Enter) to see its task and timings.
      <span class="dag-legend"><span class="path-swatch"></span> critical path</span></p>
    ${run.steps.length > MAX_DRAWN
      ? html`<${Empty}>${run.steps.length} steps: too many to draw; they are listed below.<//>`
      : html`<${Dag} steps=${run.steps} run=${run} selected=${selected} onSelect=${setSelected} critical=${critical} now=${now}
          label=${`Steps of run ${run.id}`} />`}
    ${chosen ? html`<${StepDetail} step=${chosen} byName=${byName} run=${run} now=${now} onPath=${critical.steps.has(chosen.name)} />` : null}
    <h2 class="section">Steps</h2>
    <table aria-label="Steps of the run, in run order">
      <thead><tr>
        <th scope="col">Step</th><th scope="col">State</th><th scope="col">Task</th><th scope="col">Runs after</th>
        <th scope="col">Started</th><th scope="col">Finished</th><th scope="col" class="num">Duration</th><th scope="col">Waits for</th>
      </tr></thead>
      <tbody>${run.steps.map(
        (s) => html`<tr key=${s.name} data-step=${s.name} class=${critical.steps.has(s.name) ? "critical" : ""}>
          <td><button class="link" onClick=${() => setSelected(s.name)} aria-label=${`Select step ${s.name}`}>${s.name}</button>
            ${critical.steps.has(s.name) ? html` <span class="tag" title="on the critical path">critical</span>` : null}</td>
          <td><${Status} value=${stepState(s)} /></td>
          <td>${s.taskId ? html`<a href=${`/tasks/${s.taskId}`}>${s.taskId}</a>` : html`<span class="muted">—</span>`}</td>
          <td>${(s.after || []).join(", ") || html`<span class="muted">—</span>`}</td>
          <td><${Time} value=${s.startedAt} /></td>
          <td><${Time} value=${s.finishedAt} /></td>
          <td class="num">${seconds(stepSeconds(s, now))}</td>
          <td>${waitsFor(s, byName, run) || html`<span class="muted">—</span>`}</td>
        </tr>`,
      )}</tbody>
    </table>`;
}
