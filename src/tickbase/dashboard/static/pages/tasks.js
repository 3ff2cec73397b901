// Tasks: filters in the URL, cursor paging, live rows from the `tasks` channel.
//
// A push carries summaries of the tasks that changed; rows on screen are
// updated in place and new tasks matching the filter appear at the top of the
// first page, so an open page costs the database nothing per push.

import { api, canWrite } from "../lib/api.js";
import { Empty, ErrorNote, Status, Time, duration, html, navigate, useLoad } from "../lib/ui.js";
import { useState } from "../vendor/htm-preact/standalone.module.js";

const STATUSES = ["", "pending", "running", "retrying", "succeeded", "failed", "cancelled"];
const EXACT = ["status", "queue", "taskType", "nodeId"];

// The filter as the URL holds it: the exact fields, the time range, and the
// JSON conditions (`where`, repeatable).
function readFilters() {
  const params = new URLSearchParams(location.search);
  const filters = {};
  for (const key of [...EXACT, "createdAfter", "createdBefore", "cursor"]) {
    if (params.get(key)) filters[key] = params.get(key);
  }
  const where = params.getAll("where").filter(Boolean);
  if (where.length) filters.where = where;
  return filters;
}

function filterQuery(filters) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (key === "where") value.forEach((w) => query.append("where", w));
    else if (value) query.set(key, value);
  }
  return query;
}

function href(filters) {
  const text = filterQuery(filters).toString();
  return text ? `/tasks?${text}` : "/tasks";
}

// Whether a pushed summary belongs in this view (summaries carry no payload:
// with JSON conditions, new tasks are announced instead of guessed).
function matches(task, filters) {
  if (!EXACT.every((key) => !filters[key] || task[key] === filters[key])) return false;
  if (filters.createdAfter && Date.parse(task.createdAt) < Date.parse(filters.createdAfter)) return false;
  if (filters.createdBefore && Date.parse(task.createdAt) >= Date.parse(filters.createdBefore)) return false;
  return true;
}

function merge(items, changed, filters, firstPage) {
  const byId = new Map(changed.map((t) => [t.id, t]));
  const shown = new Set(items.map((t) => t.id));
  const updated = items
    .map((t) => (byId.has(t.id) ? { ...t, ...byId.get(t.id), fresh: true } : t))
    .filter((t) => matches(t, filters));
  if (!firstPage || filters.where) return updated;
  const added = changed
    .filter((t) => !shown.has(t.id) && matches(t, filters))
    .map((t) => ({ ...t, fresh: true }));
  return [...added, ...updated].sort((a, b) => b.id - a.id).slice(0, Math.max(items.length, 50));
}

// <input type="datetime-local"> speaks the browser's zone; the URL holds UTC.
function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : "";
}

// The form keeps what is typed in its own state (a live push re-renders the
// page and must not undo an edit); the page remounts it when the URL changes.
function Filters({ filters }) {
  const [draft, setDraft] = useState(() => ({
    ...Object.fromEntries(EXACT.map((key) => [key, filters[key] || ""])),
    createdAfter: toLocalInput(filters.createdAfter),
    createdBefore: toLocalInput(filters.createdBefore),
    where: (filters.where || []).join("\n"),
  }));
  const bind = (name) => ({
    name,
    value: draft[name],
    onInput: (event) => setDraft((old) => ({ ...old, [name]: event.target.value })),
  });
  const submit = (event) => {
    event.preventDefault();
    const next = {};
    for (const key of EXACT) next[key] = draft[key].trim();
    next.createdAfter = fromLocalInput(draft.createdAfter);
    next.createdBefore = fromLocalInput(draft.createdBefore);
    const where = draft.where.split("\n").map((w) => w.trim()).filter(Boolean);
    if (where.length) next.where = where;
    navigate(href(next));
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Filter tasks">
    <label>Status
      <select ...${bind("status")} onChange=${bind("status").onInput}>
        ${STATUSES.map((s) => html`<option value=${s}>${s || "any"}</option>`)}
      </select>
    </label>
    <label>Queue <input ...${bind("queue")} placeholder="any" size="10" /></label>
    <label>Type <input ...${bind("taskType")} placeholder="any" size="18" /></label>
    <label>Node <input ...${bind("nodeId")} placeholder="any" size="14" /></label>
    <label>Created from <input type="datetime-local" ...${bind("createdAfter")} /></label>
    <label>Created before <input type="datetime-local" ...${bind("createdBefore")} /></label>
    <label>JSON conditions (one per line)
      <textarea ...${bind("where")} rows="1" cols="28" placeholder="payload.symbol = BTCUSDT"></textarea>
    </label>
    <button type="submit" class="primary">Apply</button>
    <a href="/tasks">Clear</a>
  </form>`;
}

// Cancel or retry everything the filter matches: a dry run counts first, the
// run acts on exactly what was counted, and an audit row says who did it.
function Bulk({ filters, onDone }) {
  const [state, setState] = useState(null);
  const filter = { ...filters };
  delete filter.cursor;
  const ask = async (action) => {
    try {
      const dry = await api("task-bulk-actions", { method: "POST", body: { action, filter, dryRun: true } });
      setState({ action, dry });
    } catch (error) {
      setState({ error });
    }
  };
  const run = async () => {
    try {
      const done = await api("task-bulk-actions", {
        method: "POST",
        body: { action: state.action, filter, dryRun: false, upToId: state.dry.upToId },
      });
      setState({ done });
      onDone();
    } catch (error) {
      setState({ error });
    }
  };
  return html`<section class="panel bulk" aria-label="Bulk actions">
    <div class="actions">
      <button onClick=${() => ask("cancel")}>Cancel all matching…</button>
      <button onClick=${() => ask("retry")}>Retry all matching…</button>
    </div>
    ${state && state.dry
      ? html`<p role="status">
          ${`${state.dry.matched} task${state.dry.matched === 1 ? "" : "s"} match this filter${state.action === "retry" ? " (failed or cancelled ones are copied)" : ""}. `}
          <button class="danger" onClick=${run} disabled=${!state.dry.matched}>${state.action === "cancel" ? "Cancel" : "Retry"} ${state.dry.matched}</button>${" "}
          <button onClick=${() => setState(null)}>Keep them</button></p>`
      : null}
    ${state && state.done
      ? html`<p role="status">${`${state.done.action === "cancel" ? "Cancelled" : "Retried"} ${state.done.changed} of ${state.done.matched} (audit #${state.done.auditId}).`}</p>`
      : null}
    ${state && state.error ? html`<${ErrorNote} error=${state.error} />` : null}
  </section>`;
}

export function Tasks() {
  const filters = readFilters();
  const key = JSON.stringify(filters);
  const [unseen, setUnseen] = useState(false);
  const { data, error, loading, reload } = useLoad(
    () => {
      setUnseen(false);
      return api(`tasks?${filterQuery(filters).toString()}`);
    },
    [key],
    {
      channels: ["tasks"],
      onPush: (content, setState) => {
        setState((old) =>
          old.data ? { ...old, data: { ...old.data, items: merge(old.data.items, content.tasks, filters, !filters.cursor) } } : old,
        );
        if (filters.where && !filters.cursor && content.tasks.some((t) => matches(t, filters))) setUnseen(true);
        return false;
      },
    },
  );
  const items = data ? data.items : [];
  return html`
    <h1>Tasks</h1>
    <${Filters} filters=${filters} key=${key} />
    ${canWrite() ? html`<${Bulk} filters=${filters} onDone=${reload} key=${key} />` : null}
    <${ErrorNote} error=${error} />
    ${unseen ? html`<div class="banner info" role="status">New tasks may match these conditions. <a href=${href(filters)} onClick=${(e) => { e.preventDefault(); reload(); }}>Refresh</a></div>` : null}
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
      ${filters.cursor ? html`<a href=${href({ ...filters, cursor: "" })}>Newest</a>` : null}
      ${data && data.nextCursor ? html`<a href=${href({ ...filters, cursor: data.nextCursor })}>Older →</a>` : null}
    </div>`;
}
