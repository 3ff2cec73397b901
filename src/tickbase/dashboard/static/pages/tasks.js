// Tasks: filters in the URL, cursor paging, live rows from the `tasks` channel.
//
// A push carries summaries of the tasks that changed; rows on screen are
// updated in place and new tasks matching the filter appear at the top of the
// first page, so an open page costs the database nothing per push.

import { api } from "../lib/api.js";
import { Empty, ErrorNote, Status, Time, duration, html, navigate, queryParams, useLoad, withQuery } from "../lib/ui.js";

const STATUSES = ["", "pending", "running", "retrying", "succeeded", "failed", "cancelled"];
const FILTERS = ["status", "queue", "taskType"];

function matches(task, filters) {
  return FILTERS.every((key) => !filters[key] || task[key] === filters[key]);
}

function merge(items, changed, filters, firstPage) {
  const byId = new Map(changed.map((t) => [t.id, t]));
  const shown = new Set(items.map((t) => t.id));
  const updated = items
    .map((t) => (byId.has(t.id) ? { ...t, ...byId.get(t.id), fresh: true } : t))
    .filter((t) => matches(t, filters));
  if (!firstPage) return updated;
  const added = changed
    .filter((t) => !shown.has(t.id) && matches(t, filters))
    .sort((a, b) => b.id - a.id)
    .map((t) => ({ ...t, fresh: true }));
  return [...added, ...updated].sort((a, b) => b.id - a.id).slice(0, Math.max(items.length, 50));
}

function Filters({ filters }) {
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    navigate(withQuery("/tasks", Object.fromEntries([...form.entries()].map(([k, v]) => [k, v.trim()]))));
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Filter tasks">
    <label>Status
      <select name="status" value=${filters.status || ""}>
        ${STATUSES.map((s) => html`<option value=${s}>${s || "any"}</option>`)}
      </select>
    </label>
    <label>Queue <input name="queue" value=${filters.queue || ""} placeholder="any" size="12" /></label>
    <label>Type <input name="taskType" value=${filters.taskType || ""} placeholder="any" size="20" /></label>
    <button type="submit" class="primary">Apply</button>
    <a href="/tasks">Clear</a>
  </form>`;
}

export function Tasks() {
  const filters = queryParams();
  const key = JSON.stringify(filters);
  const { data, error, loading } = useLoad(
    () => api("tasks", { query: { ...Object.fromEntries(FILTERS.map((k) => [k, filters[k]])), cursor: filters.cursor } }),
    [key],
    {
      channels: ["tasks"],
      onPush: (content, setState) => {
        setState((old) =>
          old.data ? { ...old, data: { ...old.data, items: merge(old.data.items, content.tasks, filters, !filters.cursor) } } : old,
        );
        return false;
      },
    },
  );
  const items = data ? data.items : [];
  return html`
    <h1>Tasks</h1>
    <${Filters} filters=${filters} />
    <${ErrorNote} error=${error} />
    ${loading && !data
      ? html`<p class="muted">Loading tasks…</p>`
      : items.length
        ? html`<table aria-label="Tasks, newest first">
            <thead><tr>
              <th scope="col" class="num">Id</th><th scope="col">Type</th><th scope="col">Queue</th><th scope="col">Status</th>
              <th scope="col" class="num">Attempts</th><th scope="col">Created</th><th scope="col">Node</th><th scope="col">Run time</th>
            </tr></thead>
            <tbody>${items.map(
              (t) => html`<tr key=${t.id} class=${t.fresh ? "fresh" : ""} data-task-id=${t.id}>
                <td class="num"><a href=${`/tasks/${t.id}`}>${t.id}</a></td>
                <td class="mono">${t.taskType}</td>
                <td>${t.queue}</td>
                <td><${Status} value=${t.status} /></td>
                <td class="num">${t.attempts}/${t.maxAttempts}</td>
                <td><${Time} value=${t.createdAt} /></td>
                <td>${t.nodeId || html`<span class="muted">—</span>`}</td>
                <td>${duration(t.startedAt, t.finishedAt)}</td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>No task matches these filters.${
            Object.keys(filters).length ? html` <a href="/tasks">Show all tasks</a>.` : " Enqueue one with tickbase enqueue."
          }<//>`}
    <div class="pager">
      ${filters.cursor ? html`<a href=${withQuery("/tasks", { ...filters, cursor: "" })}>Newest</a>` : null}
      ${data && data.nextCursor ? html`<a href=${withQuery("/tasks", { ...filters, cursor: data.nextCursor })}>Older →</a>` : null}
    </div>`;
}
