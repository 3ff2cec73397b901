// Alerts: firing and resolved alerts (state filter and cursor in the URL),
// the rules that raise them (admins enable, disable or change a threshold) and
// the webhooks told of each change.
//
// Live: the `alert` WebSocket channel pushes every change (fired, resolved);
// it is merged into the rows on screen, so an open page reads nothing per push.

import { api, canWrite } from "../lib/api.js";
import { Empty, ErrorNote, Time, html, navigate, queryParams, seconds, useLoad, withQuery } from "../lib/ui.js";
import { useState } from "../vendor/htm-preact/standalone.module.js";

const STATES = ["", "firing", "resolved"];

function mergeAlert(items, alert, state, firstPage) {
  const changed = { ...alert, fresh: true };
  const at = items.findIndex((a) => a.id === alert.id);
  if (at >= 0) {
    const next = items.map((a) => (a.id === alert.id ? { ...a, ...changed } : a));
    return next.filter((a) => !state || a.state === state);
  }
  if (!firstPage || (state && alert.state !== state)) return items;
  return [changed, ...items].sort((a, b) => b.id - a.id);
}

function AlertState({ value }) {
  return html`<span class=${`status alert-${value}`}>${value}</span>`;
}

function AlertsTable({ state, cursor }) {
  const { data, error, loading } = useLoad(
    () => api("alerts", { query: { state, cursor } }),
    [state, cursor],
    {
      channels: ["alert"],
      onPush: (alert, setState) => {
        setState((old) =>
          old.data ? { ...old, data: { ...old.data, items: mergeAlert(old.data.items, alert, state, !cursor) } } : old,
        );
        return false;
      },
    },
  );
  const items = data ? data.items : [];
  const here = { state, cursor };
  return html`
    <${ErrorNote} error=${error} />
    ${loading && !data
      ? html`<p class="muted">Loading alerts…</p>`
      : items.length
        ? html`<table aria-label="Alerts, newest first">
            <thead><tr>
              <th scope="col" class="num">Id</th><th scope="col">State</th><th scope="col">Rule</th><th scope="col">Subject</th>
              <th scope="col">Message</th><th scope="col">Fired</th><th scope="col">Resolved</th><th scope="col">Lasted</th>
            </tr></thead>
            <tbody>${items.map(
              (a) => html`<tr key=${a.id} class=${a.fresh ? "fresh" : ""} data-alert-id=${a.id}>
                <td class="num">${a.id}</td>
                <td><${AlertState} value=${a.state} /></td>
                <td class="mono">${a.rule}</td>
                <td>${a.subject || html`<span class="muted">—</span>`}</td>
                <td>${a.message}</td>
                <td><${Time} value=${a.firedAt} /></td>
                <td><${Time} value=${a.resolvedAt} /></td>
                <td>${a.resolvedAt ? seconds((Date.parse(a.resolvedAt) - Date.parse(a.firedAt)) / 1000) : html`<span class="muted">ongoing</span>`}</td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>${state === "firing"
            ? "No alert is firing: all clear."
            : state === "resolved"
              ? "No alert has resolved yet."
              : "No alert has fired yet. Rules below say what would raise one."}<//>`}
    <div class="pager">
      ${cursor ? html`<a href=${withQuery("/alerts", { ...here, cursor: "" })}>Newest</a>` : null}
      ${data && data.nextCursor ? html`<a href=${withQuery("/alerts", { ...here, cursor: data.nextCursor })}>Older →</a>` : null}
    </div>`;
}

function RuleRow({ rule, writer, onChange }) {
  const [threshold, setThreshold] = useState(rule.threshold ?? "");
  const [busy, setBusy] = useState(false);
  const patch = async (body) => {
    setBusy(true);
    try {
      await onChange(rule.name, body);
    } finally {
      setBusy(false);
    }
  };
  const save = (event) => {
    event.preventDefault();
    const value = Number(threshold);
    if (threshold === "" || !Number.isFinite(value)) return;
    patch({ threshold: value });
  };
  return html`<tr data-rule=${rule.name}>
    <th scope="row" class="mono">${rule.name}</th>
    <td class="mono">${rule.kind}</td>
    <td>${rule.description || html`<span class="muted">—</span>`}</td>
    <td class="num">${writer
      ? html`<form class="inline" onSubmit=${save}>
          <label class="sr-only" for=${`threshold-${rule.name}`}>Threshold of ${rule.name}</label>
          <input id=${`threshold-${rule.name}`} type="number" step="any" min="0" size="6" value=${threshold} placeholder="default"
            onInput=${(e) => setThreshold(e.target.value)} disabled=${busy} />
          <button type="submit" disabled=${busy || String(threshold) === String(rule.threshold ?? "")}>Save</button>
        </form>`
      : rule.threshold ?? html`<span class="muted">—</span>`}</td>
    <td class="num">${rule.forSeconds ? seconds(rule.forSeconds) : "at once"}</td>
    <td>${writer
      ? html`<button aria-pressed=${rule.enabled ? "true" : "false"} disabled=${busy}
          aria-label=${`${rule.enabled ? "Disable" : "Enable"} rule ${rule.name}`}
          onClick=${() => patch({ enabled: !rule.enabled })}>${rule.enabled ? "Enabled" : "Disabled"}</button>`
      : rule.enabled ? "enabled" : html`<span class="muted">disabled</span>`}</td>
    <td><${Time} value=${rule.updatedAt} /></td>
  </tr>`;
}

function Rules() {
  const [actionError, setActionError] = useState(null);
  const { data, error, reload } = useLoad(() => api("alert-rules"), []);
  const writer = canWrite();
  const change = async (name, body) => {
    setActionError(null);
    try {
      await api(`alert-rules/${encodeURIComponent(name)}`, { method: "PATCH", body });
      await reload();
    } catch (failure) {
      setActionError(failure);
    }
  };
  return html`<section class="panel wide" aria-labelledby="rules-h">
    <h2 id="rules-h">Rules</h2>
    <${ErrorNote} error=${error || actionError} />
    ${!data
      ? html`<p class="muted">Loading rules…</p>`
      : data.length
        ? html`<table aria-label="Alert rules">
            <thead><tr>
              <th scope="col">Rule</th><th scope="col">Kind</th><th scope="col">Fires when</th>
              <th scope="col" class="num">Threshold</th><th scope="col" class="num">For</th><th scope="col">Enabled</th><th scope="col">Changed</th>
            </tr></thead>
            <tbody>${data.map((r) => html`<${RuleRow} key=${`${r.name}-${r.updatedAt}`} rule=${r} writer=${writer} onChange=${change} />`)}</tbody>
          </table>`
        : html`<${Empty}>No alert rule is defined (the migrations seed one of each kind).<//>`}
  </section>`;
}

function Webhooks() {
  const { data, error } = useLoad(() => api("alert-webhooks"), []);
  return html`<section class="panel wide" aria-labelledby="hooks-h">
    <h2 id="hooks-h">Webhooks</h2>
    <${ErrorNote} error=${error} />
    ${!data
      ? html`<p class="muted">Loading webhooks…</p>`
      : data.length
        ? html`<table aria-label="Alert webhooks">
            <thead><tr><th scope="col" class="num">Id</th><th scope="col">URL</th><th scope="col">Enabled</th><th scope="col">Added</th></tr></thead>
            <tbody>${data.map(
              (w) => html`<tr key=${w.id}>
                <td class="num">${w.id}</td><td class="mono">${w.url}</td>
                <td>${w.enabled ? "yes" : html`<span class="muted">no</span>`}</td><td><${Time} value=${w.createdAt} /></td>
              </tr>`,
            )}</tbody>
          </table>`
        : html`<${Empty}>No webhook is told of alerts. Add one with <code>tickbase alerts webhook-add URL</code>.<//>`}
    <p class="label">URLs are shown without their query and credentials.</p>
  </section>`;
}

export function Alerts() {
  const params = queryParams();
  const state = STATES.includes(params.state) ? params.state : "";
  const filter = (event) => {
    event.preventDefault();
    navigate(withQuery("/alerts", { state: new FormData(event.target).get("state") }));
  };
  return html`
    <h1>Alerts</h1>
    <form class="filters" onSubmit=${filter} aria-label="Filter alerts">
      <label>State
        <select name="state" value=${state}>${STATES.map((s) => html`<option value=${s}>${s || "any"}</option>`)}</select>
      </label>
      <button type="submit" class="primary">Apply</button>
    </form>
    <${AlertsTable} key=${`${state}|${params.cursor || ""}`} state=${state} cursor=${params.cursor} />
    <div class="grid" style="margin-top:16px">
      <${Rules} />
      <${Webhooks} />
    </div>`;
}
