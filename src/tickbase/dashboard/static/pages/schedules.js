// Schedules: every schedule with its computed status, filters in the URL,
// the create form (admins, ?new=1). Rows refresh when a `tasks` push carries
// a task of a shown schedule (at most one reload per 2 s), else every 15 s.

import { api, canWrite } from "../lib/api.js";
import { Empty, ErrorNote, Status, Time, html, navigate, queryParams, useLoad, withQuery } from "../lib/ui.js";
import { useRef } from "../vendor/htm-preact/standalone.module.js";
import { ScheduleForm } from "./schedule_form.js";

import { RELOAD_GAP_MS, StateWord, schedulePath, timing } from "./schedule.js";

export { Schedule } from "./schedule.js";

const STATUSES = ["", "pending", "running", "succeeded", "failed", "paused", "disabled"];
// A page of schedules by name (the server filters by name and type; the
// status is computed, so it is filtered here, on the page shown).
const PAGE = 100;

function matches(s, filters) {
  if (filters.status && s.status !== filters.status) return false;
  if (filters.taskType && s.taskType !== filters.taskType) return false;
  if (filters.q && !s.name.toLowerCase().includes(filters.q.toLowerCase())) return false;
  return true;
}

function Filters({ filters, taskTypes }) {
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    navigate(withQuery("/schedules", Object.fromEntries([...form.entries()].map(([k, v]) => [k, v.trim()]))));
  };
  const types = [...new Set([...taskTypes, filters.taskType || ""])].filter(Boolean).sort();
  return html`<form class="filters" onSubmit=${submit} aria-label="Filter schedules">
    <label>Status
      <select name="status" value=${filters.status || ""}>
        ${STATUSES.map((s) => html`<option value=${s}>${s || "any"}</option>`)}
      </select>
    </label>
    <label>Task type
      <select name="taskType" value=${filters.taskType || ""}>
        <option value="">any</option>
        ${types.map((t) => html`<option value=${t}>${t}</option>`)}
      </select>
    </label>
    <label>Name contains <input name="q" type="search" value=${filters.q || ""} placeholder="any" size="16" /></label>
    <button type="submit" class="primary">Apply</button>
    <a href="/schedules">Clear</a>
  </form>`;
}

function Table({ items }) {
  return html`<table aria-label="Schedules by name">
    <thead><tr>
      <th scope="col">Name</th><th scope="col">Status</th><th scope="col">Kind</th><th scope="col">When</th>
      <th scope="col">Zone</th><th scope="col">Task type</th><th scope="col">Queue</th>
      <th scope="col">Next fire</th><th scope="col">Last fire</th><th scope="col">State</th>
    </tr></thead>
    <tbody>${items.map(
      (s) => html`<tr key=${s.id} data-schedule=${s.name}>
        <td><a href=${schedulePath(s.name)}>${s.name}</a></td>
        <td><${Status} value=${s.status} /></td>
        <td>${s.kind}</td>
        <td class="mono">${timing(s)}</td>
        <td>${s.kind === "cron" ? s.timezone : html`<span class="muted">—</span>`}</td>
        <td class="mono">${s.taskType}</td>
        <td>${s.queue}</td>
        <td><${Time} value=${s.enabled && !s.paused ? s.nextFireAt : null} /></td>
        <td><${Time} value=${s.lastFireAt} /></td>
        <td><${StateWord} schedule=${s} /></td>
      </tr>`,
    )}</tbody>
  </table>`;
}

export function Schedules() {
  const filters = queryParams();
  const { new: creating, ...shownFilters } = filters;
  const shown = useRef(new Set());
  const { data, error, loading } = useLoad(
    () =>
      api("schedules", {
        query: { limit: PAGE, after: shownFilters.after, q: shownFilters.q, taskType: shownFilters.taskType },
      }),
    [JSON.stringify(shownFilters)],
    {
    channels: ["tasks"],
    minGapMs: RELOAD_GAP_MS,
    // Reload only for a task of a schedule on screen.
    onPush: (content) => content.tasks.some((t) => t.scheduleId !== null && shown.current.has(t.scheduleId)),
    },
  );
  const all = data || [];
  const items = all.filter((s) => matches(s, shownFilters));
  shown.current = new Set(items.map((s) => s.id));
  const writer = canWrite();
  const here = withQuery("/schedules", shownFilters);
  const filtered = Object.keys(shownFilters).some((key) => key !== "after");
  const { after, ...firstPage } = shownFilters;
  const pager = html`<div class="pager">
    ${after ? html`<a href=${withQuery("/schedules", firstPage)}>First page</a>` : null}
    ${all.length === PAGE ? html`<a href=${withQuery("/schedules", { ...firstPage, after: all[all.length - 1].name })}>Next →</a>` : null}
  </div>`;
  return html`
    <div class="page-head">
      <h1>Schedules</h1>
      ${writer && !creating ? html`<a class="button primary" href=${withQuery("/schedules", { ...shownFilters, new: 1 })}>New schedule</a>` : null}
    </div>
    ${creating
      ? writer
        ? html`<${ScheduleForm} cancelHref=${here} onDone=${(saved) => navigate(schedulePath(saved.name))} />`
        : html`<div class="banner warn">Only an admin can create schedules: sign in with an admin token.</div>`
      : null}
    <${Filters} filters=${shownFilters} taskTypes=${all.map((s) => s.taskType)} />
    <${ErrorNote} error=${error} />
    ${loading && !data
      ? html`<p class="muted">Loading schedules…</p>`
      : items.length
        ? html`<${Table} items=${items} />`
        : html`<${Empty}>${
            filtered
              ? html`No schedule matches these filters. <a href="/schedules">Show all schedules</a>.`
              : writer
                ? html`No schedule yet. <a href="/schedules?new=1">Create one</a>, or use tickbase schedules add.`
                : "No schedule yet. An admin creates them here or with tickbase schedules add."
          }<//>`}
    ${pager}`;
}
