// Workflows: the stored definitions, one definition (its DAG and recent runs),
// and the runs list (filters in the URL, cursor paging). A run's own page is
// run.js; WORKFLOW_ROUTES gives the router all three.
//
// Runs lists are re-read (at most every 2 s) only when a `tasks` push carries
// a step of a run they show still running, or of a run newer than the first
// page's newest: other pushes cost nothing.

import { api, canWrite } from "../lib/api.js";
import { Dag, MAX_DRAWN } from "../lib/dag.js";
import { Empty, ErrorNote, Status, Time, duration, html, navigate, queryParams, useLoad, withQuery } from "../lib/ui.js";
import { Run } from "./run.js";
import { useRef, useState } from "../vendor/htm-preact/standalone.module.js";

const RUN_STATUSES = ["", "running", "succeeded", "failed", "cancelled"];

function concernsRuns(content, items, firstPage) {
  const newest = items.length ? items[0].id : 0;
  const open = new Set(items.filter((r) => r.status === "running").map((r) => r.id));
  return content.tasks.some((t) => t.workflowRunId && (open.has(t.workflowRunId) || (firstPage && t.workflowRunId > newest)));
}

function useRuns(query) {
  const key = JSON.stringify(query);
  const shown = useRef([]); // the latest items (the push handler outlives a render)
  const result = useLoad(() => api("runs", { query }), [key], {
    channels: ["tasks"],
    minGapMs: 2000,
    onPush: (content) => concernsRuns(content, shown.current, !query.cursor),
  });
  shown.current = result.data ? result.data.items : [];
  return result;
}

export function RunsTable({ runs, label, showWorkflow = true }) {
  return html`<table aria-label=${label}>
    <thead><tr>
      <th scope="col" class="num">Run</th>${showWorkflow ? html`<th scope="col">Workflow</th>` : null}<th scope="col">Status</th>
      <th scope="col">Started</th><th scope="col">Finished</th><th scope="col">Run time</th><th scope="col">Schedule</th>
    </tr></thead>
    <tbody>${runs.map(
      (r) => html`<tr key=${r.id} data-run-id=${r.id}>
        <td class="num"><a href=${`/runs/${r.id}`}>${r.id}</a></td>
        ${showWorkflow ? html`<td><a href=${`/workflows/${encodeURIComponent(r.workflowName)}`}>${r.workflowName}</a></td>` : null}
        <td><${Status} value=${r.status} /></td>
        <td><${Time} value=${r.createdAt} /></td>
        <td><${Time} value=${r.finishedAt} /></td>
        <td>${r.finishedAt ? duration(r.createdAt, r.finishedAt) : html`<span class="muted">—</span>`}</td>
        <td>${r.scheduleId ? html`<a href=${`/schedules/${r.scheduleId}`}>${r.scheduleId}</a>` : html`<span class="muted">—</span>`}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

// The selects are not controlled (no `value`): a re-render while someone picks
// (a live reload) must not put back the value of the URL.
function RunFilters({ filters, names }) {
  const submit = (event) => {
    event.preventDefault();
    const form = Object.fromEntries(new FormData(event.target).entries());
    navigate(withQuery("/workflows", { workflow: form.workflow, status: form.status }));
  };
  const options = filters.workflow && !names.includes(filters.workflow) ? [...names, filters.workflow] : names;
  return html`<form class="filters" onSubmit=${submit} aria-label="Filter runs">
    <label>Workflow
      <select name="workflow">
        <option value="">any</option>
        ${options.map((n) => html`<option value=${n} selected=${n === filters.workflow}>${n}</option>`)}
      </select>
    </label>
    <label>Run status
      <select name="status">
        ${RUN_STATUSES.map((s) => html`<option value=${s} selected=${s === (filters.status || "")}>${s || "any"}</option>`)}
      </select>
    </label>
    <button type="submit" class="primary">Apply</button>
    <a href="/workflows">Clear</a>
  </form>`;
}

export function Workflows() {
  const filters = queryParams();
  const definitions = useLoad(() => api("workflows"), []);
  const runs = useRuns({ workflow: filters.workflow, status: filters.status, cursor: filters.cursor });
  const list = definitions.data || [];
  const items = runs.data ? runs.data.items : [];
  const filtered = filters.workflow || filters.status;
  return html`
    <h1>Workflows</h1>
    <${ErrorNote} error=${definitions.error} />
    ${definitions.loading && !definitions.data
      ? html`<p class="muted">Loading workflows…</p>`
      : list.length
        ? html`<table aria-label="Stored workflows, by name">
            <thead><tr>
              <th scope="col">Name</th><th scope="col" class="num">Steps</th><th scope="col">Mode</th>
              <th scope="col">On failure</th><th scope="col">Updated</th><th scope="col">Runs</th>
            </tr></thead>
            <tbody>${list.map(
              (w) => html`<tr key=${w.name} data-workflow=${w.name}>
                <td><a href=${`/workflows/${encodeURIComponent(w.name)}`}>${w.name}</a></td>
                <td class="num">${w.steps.length}</td>
                <td>${w.mode}${w.maxParallel ? ` (at most ${w.maxParallel})` : ""}</td>
                <td>${w.onFailure}</td>
                <td><${Time} value=${w.updatedAt} /></td>
                <td><a href=${withQuery("/workflows", { workflow: w.name })}>runs of ${w.name}</a></td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>No workflow is stored. Define one in Python (<code>app.workflow(…).save()</code>) or POST it to
            <code>/api/v1/workflows</code>.<//>`}
    <h2 class="section" id="runs">Runs</h2>
    <${RunFilters} key=${JSON.stringify(filters)} filters=${filters} names=${list.map((w) => w.name)} />
    <${ErrorNote} error=${runs.error} />
    ${runs.loading && !runs.data
      ? html`<p class="muted">Loading runs…</p>`
      : items.length
        ? html`<${RunsTable} runs=${items} label="Workflow runs, newest first" />`
        : html`<${Empty}>${filtered
            ? html`No run matches these filters. <a href="/workflows">Show all runs</a>.`
            : "No workflow has run yet."}<//>`}
    <div class="pager">
      ${filters.cursor ? html`<a href=${withQuery("/workflows", { ...filters, cursor: "" })}>Newest</a>` : null}
      ${runs.data && runs.data.nextCursor ? html`<a href=${withQuery("/workflows", { ...filters, cursor: runs.data.nextCursor })}>Older →</a>` : null}
    </div>`;
}

export function Workflow({ name }) {
  const [actionError, setActionError] = useState(null);
  const [selected, setSelected] = useState(null);
  const definition = useLoad(() => api(`workflows/${encodeURIComponent(name)}`), [name]);
  const runs = useRuns({ workflow: name, limit: 20 });
  const start = async () => {
    setActionError(null);
    try {
      const run = await api(`workflows/${encodeURIComponent(name)}/runs`, { method: "POST" });
      navigate(`/runs/${run.id}`);
    } catch (failure) {
      setActionError(failure);
    }
  };
  const wf = definition.data;
  if (!wf) {
    return definition.error
      ? html`<h1>Workflow ${name}</h1><${ErrorNote} error=${definition.error} /><p><a href="/workflows">All workflows</a></p>`
      : html`<p class="muted">Loading workflow ${name}…</p>`;
  }
  const chosen = selected && wf.steps.find((s) => s.name === selected);
  const items = runs.data ? runs.data.items : [];
  return html`
    <h1>Workflow ${wf.name}</h1>
    <${ErrorNote} error=${actionError} />
    ${canWrite()
      ? html`<div class="actions" role="group" aria-label="Workflow actions">
          <button class="primary" onClick=${start}>Run now</button>
        </div>`
      : null}
    <div class="panel run-facts">
      <dl class="facts">
        <dt>Steps</dt><dd>${wf.steps.length}</dd>
        <dt>Mode</dt><dd>${wf.mode}${wf.maxParallel ? `, at most ${wf.maxParallel} at once` : ""}</dd>
        <dt>On failure</dt><dd>${wf.onFailure === "stop" ? "stop the run" : "skip what depends on the failed step"}</dd>
        <dt>Updated</dt><dd><${Time} value=${wf.updatedAt} /></dd>
      </dl>
    </div>
    ${wf.steps.length > MAX_DRAWN
      ? html`<${Empty}>${wf.steps.length} steps: too many to draw.<//>`
      : html`<${Dag} steps=${wf.steps} selected=${selected} onSelect=${setSelected} label=${`Steps of workflow ${wf.name}`} />`}
    ${chosen
      ? html`<section class="panel step-detail" aria-labelledby="step-detail-title" aria-live="polite">
          <h2 id="step-detail-title">Step ${chosen.name}</h2>
          <dl class="facts">
            <dt>Task type</dt><dd class="mono">${chosen.taskType}</dd>
            <dt>Runs after</dt><dd>${chosen.after.length ? chosen.after.join(", ") : html`<span class="muted">nothing (a first step)</span>`}</dd>
            <dt>Queue</dt><dd>${chosen.options.queue || "default"}</dd>
            <dt>Payload</dt><dd><pre>${JSON.stringify(chosen.payload)}</pre></dd>
          </dl>
        </section>`
      : null}
    <h2 class="section">Recent runs</h2>
    <${ErrorNote} error=${runs.error} />
    ${items.length
      ? html`<${RunsTable} runs=${items} label=${`Recent runs of ${wf.name}, newest first`} showWorkflow=${false} />`
      : html`<${Empty}>${runs.loading ? "Loading runs…" : "This workflow has not run yet."}<//>`}
    <p><a href=${withQuery("/workflows", { workflow: wf.name })}>All runs of ${wf.name}</a></p>`;
}

export const WORKFLOW_ROUTES = [
  [/^\/workflows$/, () => html`<${Workflows} />`],
  [/^\/workflows\/([^/]+)$/, (name) => html`<${Workflow} name=${decodeURIComponent(name)} key=${name} />`],
  [/^\/runs\/(\d+)$/, (id) => html`<${Run} id=${id} key=${id} />`],
];
