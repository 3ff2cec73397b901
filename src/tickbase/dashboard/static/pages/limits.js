// Limits: queue concurrency (admins set and clear it), the task types' rate
// limits and concurrency keys, and the keys running tasks hold now.
//
// Running counts change as tasks start and end: a `tasks` push re-reads the
// limits at most every LIMITS_EVERY_MS (both reads are index-ranged over the
// running set), else every 15 s when polling.

import { api, canWrite } from "../lib/api.js";
import { Empty, ErrorNote, Time, html, queryParams, seconds, useLoad, withQuery } from "../lib/ui.js";
import { useState } from "../vendor/htm-preact/standalone.module.js";

const LIMITS_EVERY_MS = 5000;
const QUEUE_PATTERN = "[A-Za-z0-9_.:\\-]{1,64}";

function SetQueueLimit({ onSet }) {
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    setBusy(true);
    try {
      if (await onSet(String(data.get("queue")).trim(), Number(data.get("concurrency")))) form.reset();
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Set a queue limit">
    <label>Queue <input name="queue" required pattern=${QUEUE_PATTERN} size="16" placeholder="default" /></label>
    <label>At most running <input name="concurrency" type="number" min="1" step="1" required size="6" /></label>
    <button type="submit" class="primary" disabled=${busy}>Set limit</button>
  </form>`;
}

function QueueLimits({ queues, writer, onSet, onClear }) {
  return html`<section class="panel wide" aria-labelledby="queues-h">
    <h2 id="queues-h">Queue concurrency</h2>
    ${writer ? html`<${SetQueueLimit} onSet=${onSet} />` : null}
    ${queues.length
      ? html`<table aria-label="Queue concurrency limits">
          <thead><tr>
            <th scope="col">Queue</th><th scope="col" class="num">Running now</th><th scope="col" class="num">Limit</th>
            <th scope="col">Changed</th>${writer ? html`<th scope="col"><span class="sr-only">Actions</span></th>` : null}
          </tr></thead>
          <tbody>${queues.map(
            (q) => html`<tr key=${q.queue} data-queue=${q.queue}>
              <th scope="row">${q.queue}</th>
              <td class="num">${q.running}</td>
              <td class="num">${q.concurrency}${q.running >= q.concurrency ? html` <span class="status retrying">full</span>` : null}</td>
              <td><${Time} value=${q.updatedAt} /></td>
              ${writer
                ? html`<td><button class="danger" aria-label=${`Clear the limit of queue ${q.queue}`} onClick=${() => onClear(q.queue)}>Clear</button></td>`
                : null}
            </tr>`,
          )}</tbody>
        </table>`
      : html`<${Empty}>No queue is limited: every queue runs as many tasks as its workers take.${
          writer ? " Set a limit above." : " An admin sets one here or with tickbase limits set."
        }<//>`}
  </section>`;
}

function TaskLimits({ types }) {
  return html`<section class="panel wide" aria-labelledby="types-h">
    <h2 id="types-h">Rate limits and concurrency keys of task types</h2>
    ${types.length
      ? html`<table aria-label="Task type limits">
          <thead><tr>
            <th scope="col">Task type</th><th scope="col">Rate limit</th><th scope="col">Concurrency key</th>
            <th scope="col" class="num">Per key</th><th scope="col">Changed</th>
          </tr></thead>
          <tbody>${types.map(
            (t) => html`<tr key=${t.taskType}>
              <th scope="row" class="mono">${t.taskType}</th>
              <td>${t.rateMax ? `${t.rateMax} per ${seconds(t.rateWindowSeconds)}` : html`<span class="muted">none</span>`}</td>
              <td class="mono">${t.concurrencyKey || html`<span class="muted">none</span>`}</td>
              <td class="num">${t.concurrencyKey ? t.concurrencyLimit : "—"}</td>
              <td><${Time} value=${t.updatedAt} /></td>
            </tr>`,
          )}</tbody>
        </table>`
      : html`<${Empty}>No task type has a rate limit or a concurrency key. They are declared in code: <code>@app.task(rate_limit="10/m", concurrency_key="{symbol}")</code>.<//>`}
  </section>`;
}

function KeysInUse({ cursor }) {
  const { data, error } = useLoad(() => api("limits/concurrency-keys", { query: { cursor } }), [cursor], {
    channels: ["tasks"],
    minGapMs: LIMITS_EVERY_MS,
  });
  const params = queryParams();
  return html`<section class="panel wide" aria-labelledby="keys-h">
    <h2 id="keys-h">Concurrency keys in use now</h2>
    <${ErrorNote} error=${error} />
    ${!data
      ? html`<p class="muted">Loading keys…</p>`
      : data.items.length
        ? html`<table aria-label="Concurrency keys held by running tasks">
            <thead><tr>
              <th scope="col">Key</th><th scope="col" class="num">Running</th><th scope="col" class="num">Limit</th>
              <th scope="col">Task types</th><th scope="col">Oldest started</th>
            </tr></thead>
            <tbody>${data.items.map(
              (k) => html`<tr key=${k.key}>
                <th scope="row" class="mono">${k.key}</th>
                <td class="num">${k.running}</td>
                <td class="num">${k.concurrencyLimit ?? "—"}</td>
                <td class="mono">${k.taskTypes.join(", ")}</td>
                <td><${Time} value=${k.oldestStartedAt} /></td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>No running task holds a concurrency key${cursor ? " after this point" : ""}.<//>`}
    <div class="pager">
      ${cursor ? html`<a href=${withQuery("/limits", { ...params, keys: "" })}>First keys</a>` : null}
      ${data && data.nextCursor ? html`<a href=${withQuery("/limits", { ...params, keys: data.nextCursor })}>More keys →</a>` : null}
    </div>
  </section>`;
}

export function Limits() {
  const [actionError, setActionError] = useState(null);
  const { data, error, reload } = useLoad(() => api("limits"), [], { channels: ["tasks"], minGapMs: LIMITS_EVERY_MS });
  const writer = canWrite();
  const act = async (work) => {
    setActionError(null);
    try {
      await work();
      await reload();
      return true;
    } catch (failure) {
      setActionError(failure);
      return false;
    }
  };
  const onSet = (queue, concurrency) =>
    act(() => api(`limits/queues/${encodeURIComponent(queue)}`, { method: "PUT", body: { concurrency } }));
  const onClear = (queue) => act(() => api(`limits/queues/${encodeURIComponent(queue)}`, { method: "DELETE" }));
  const keys = queryParams().keys;
  return html`
    <h1>Limits</h1>
    <${ErrorNote} error=${error || actionError} />
    ${!data
      ? error
        ? null
        : html`<p class="muted">Loading limits…</p>`
      : html`<div class="grid">
          <${QueueLimits} queues=${data.queues} writer=${writer} onSet=${onSet} onClear=${onClear} />
          <${TaskLimits} types=${data.taskTypes} />
          <${KeysInUse} key=${keys || ""} cursor=${keys} />
        </div>`}`;
}
