// Market data: the real-time pipeline's live K-lines (market-live.js), the stored
// series (source, span, freshness), the selected one's K-line chart with its
// indicators and marked bars, and each series' completeness per day from its last
// integrity check. The selection lives in the URL (/market?symbol=...&interval=...).

import { api } from "../lib/api.js";
import { Empty, ErrorNote, Time, html, navigate, queryParams, useLoad, withQuery } from "../lib/ui.js";
import { useEffect, useState } from "../vendor/htm-preact/standalone.module.js";
import { KlineChart, LAYERS } from "./market-chart.js";
import { LivePanel } from "./market-live.js";

const BARS = 500;
const DAYS = 14; // heatmap columns: the newest days of the windows

export function age(seconds) {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds < 2 * 365 * 86400) return `${Math.round(seconds / 86400)} days`;
  return `${(seconds / (365.25 * 86400)).toFixed(1)} years`;
}

function link(s) {
  return withQuery("/market", { symbol: s.symbol, interval: s.interval });
}

function Freshness({ series }) {
  return html`<span class=${`status ${series.freshness}`} data-freshness=${series.freshness}
    title=${`newest bar opened ${age(series.ageSeconds)} ago; ${series.freshness} against its ${series.interval} interval`}
    >${series.freshness}</span>`;
}

function SeriesTable({ series, selected }) {
  return html`<table aria-label="Stored series">
    <thead><tr>
      <th scope="col">Series</th><th scope="col">Interval</th><th scope="col">Source</th>
      <th scope="col" class="num">Bars</th><th scope="col">First bar</th><th scope="col">Last bar</th>
      <th scope="col">Freshness</th>
    </tr></thead>
    <tbody>${series.map((s) => {
      const current = selected && selected.symbol === s.symbol && selected.interval === s.interval;
      return html`<tr key=${`${s.symbol} ${s.interval}`} class=${current ? "selected" : ""} data-series=${`${s.symbol} ${s.interval}`}>
        <td><a href=${link(s)} aria-current=${current ? "true" : undefined}>${s.symbol}</a></td>
        <td>${s.interval}</td>
        <td>${s.live ? html`live <span class="muted mono">${s.source}</span>` : "replay"}</td>
        <td class="num">${s.bars.toLocaleString()}</td>
        <td><${Time} value=${s.firstOpenTime} /></td>
        <td><${Time} value=${s.lastOpenTime} /></td>
        <td><${Freshness} series=${s} /> <span class="muted">${age(s.ageSeconds)} old</span></td>
      </tr>`;
    })}</tbody>
  </table>`;
}

function Picker({ series, selected }) {
  const value = selected ? `${selected.symbol}\n${selected.interval}` : "";
  const change = (event) => {
    const [symbol, interval] = event.target.value.split("\n");
    navigate(withQuery("/market", { symbol, interval }));
  };
  return html`<div class="picker"><label for="series-picker">Series</label>
    <select id="series-picker" value=${value} onChange=${change}>
      ${series.map((s) => html`<option value=${`${s.symbol}\n${s.interval}`}>${s.symbol} · ${s.interval} · ${s.live ? "live" : "replay"}</option>`)}
    </select>
  </div>`;
}

function Toggles({ shown, setShown }) {
  return html`<fieldset class="toggles">
    <legend>Show</legend>
    ${LAYERS.map(
      ([key, label]) => html`<label key=${key}><input type="checkbox" name=${key} checked=${shown[key]}
        onChange=${(event) => setShown({ ...shown, [key]: event.target.checked })} /> ${label}</label>`,
    )}
  </fieldset>`;
}

function Chart({ selected, series }) {
  const [shown, setShown] = useState(() => Object.fromEntries(LAYERS.map(([key, , on]) => [key, on])));
  const { data, error, reload } = useLoad(
    async () => {
      const query = { symbol: selected.symbol, interval: selected.interval, limit: BARS };
      const [bars, indicators] = await Promise.all([api("klines", { query }), api("indicators", { query })]);
      return { bars, indicators };
    },
    [selected.symbol, selected.interval],
  );
  // A new bar is due once per interval: look again then (at most once a minute).
  useEffect(() => {
    if (!series) return undefined;
    const timer = setInterval(reload, Math.max(series.intervalSeconds, 60) * 1000);
    return () => clearInterval(timer);
  }, [series && series.intervalSeconds, selected.symbol, selected.interval]);
  return html`<section class="panel wide" aria-labelledby="chart-title">
    <h2 id="chart-title">${selected.symbol} · ${selected.interval}</h2>
    ${series
      ? html`<p class="freshness" data-freshness=${series.freshness}>
          Source <strong>${series.live ? "live" : "replay"}</strong>
          ${series.live ? html`(<span class="mono">${series.source}</span>)` : " (recorded bars, not the market's)"} ·
          newest bar <${Time} value=${series.lastOpenTime} /> · <${Freshness} series=${series} />${": "}
          ${age(series.ageSeconds)} old against a ${series.interval} interval
        </p>`
      : null}
    <${Toggles} shown=${shown} setShown=${setShown} />
    <${ErrorNote} error=${error} />
    ${!data
      ? error
        ? null
        : html`<p class="muted">Loading bars…</p>`
      : data.bars.length
        ? html`<${KlineChart} bars=${data.bars} indicators=${data.indicators} shown=${shown}
            stale=${series && series.freshness === "stale"} interval=${selected.interval} />`
        : html`<${Empty}>No bars stored for this series.<//>`}
  </section>`;
}

const BUCKETS = [
  [100, "full", "100%"],
  [95, "high", "95–99%"],
  [80, "mid", "80–94%"],
  [50, "low", "50–79%"],
  [0, "poor", "below 50%"],
];

function bucket(completeness) {
  return BUCKETS.find(([floor]) => completeness >= floor)[1];
}

function dayLabel(day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

function Heatmap({ checks }) {
  if (!checks.length)
    return html`<${Empty}>No integrity check has run yet: the <span class="mono">marketdata.integrity</span> task runs every 30 minutes
      (or enqueue it now: <span class="mono">tickbase enqueue marketdata.integrity</span>).<//>`;
  const days = [...new Set(checks.flatMap((c) => c.days.map((d) => d.day)))].sort().slice(-DAYS);
  return html`<div class="heatmap-wrap">
    <table class="heatmap" aria-label="Share of expected bars present, per series and UTC day">
      <thead><tr>
        <th scope="col">Series</th>
        ${days.map((day) => html`<th scope="col" title=${`${day} (UTC day)`}>${dayLabel(day)}</th>`)}
        <th scope="col" class="num">Window</th><th scope="col">Checked</th>
      </tr></thead>
      <tbody>${checks.map((c) => {
        const byDay = new Map(c.days.map((d) => [d.day, d]));
        const name = `${c.symbol} ${c.interval}`;
        return html`<tr key=${name} data-series=${name}>
          <th scope="row"><a href=${link(c)}>${c.symbol}</a> <span class="muted">${c.interval}</span></th>
          ${days.map((day) => {
            const d = byDay.get(day);
            if (!d) return html`<td class="cell none" title=${`${name}, ${day} UTC: not in the last check's window`}><span class="sr">not checked</span></td>`;
            return html`<td class=${`cell ${bucket(d.completeness)}`}
              title=${`${name}, ${day} UTC: ${d.present} of ${d.expected} bars present (${d.completeness}%)`}>${Math.floor(d.completeness)}%</td>`;
          })}
          <td class="num" title=${`${c.present} of ${c.expected} bars, ${c.missing} missing`}>${c.completeness}%</td>
          <td><${Time} value=${c.checkedAt} /></td>
        </tr>`;
      })}</tbody>
    </table>
    <ul class="heat-legend" aria-label="Legend">
      ${BUCKETS.map(([, cls, label]) => html`<li><span class=${`swatch ${cls}`} aria-hidden="true"></span>${label}</li>`)}
      <li><span class="swatch none" aria-hidden="true"></span>not checked</li>
    </ul>
    <p class="muted small">Columns are the UTC days (the newest ${DAYS}) of each series' last integrity window; filled bars do not count as present.</p>
  </div>`;
}

export function Market() {
  const params = queryParams();
  const { data, error, loading } = useLoad(async () => {
    const [series, checks] = await Promise.all([api("marketdata/series"), api("marketdata/integrity")]);
    return { series, checks };
  }, []);
  const all = data ? data.series : [];
  const wanted = params.symbol && params.interval ? { symbol: params.symbol, interval: params.interval } : null;
  const found = wanted && all.find((s) => s.symbol === wanted.symbol && s.interval === wanted.interval);
  useEffect(() => {
    if (data && !wanted && all.length) navigate(link(all[0]), { replace: true });
  }, [data, wanted && wanted.symbol]);
  if (!data)
    return html`<h1>Market data</h1>${error ? html`<${ErrorNote} error=${error} />` : loading ? html`<p class="muted">Loading series…</p>` : null}`;
  return html`
    <h1>Market data</h1>
    <${ErrorNote} error=${error} />
    <div class="grid live-grid"><${LivePanel} /></div>
    ${all.length
      ? html`<div class="grid">
          <section class="panel wide" aria-labelledby="series-title">
            <div class="section-head">
              <h2 id="series-title">Stored series (${all.length})</h2>
              <${Picker} series=${all} selected=${found} />
            </div>
            <${SeriesTable} series=${all} selected=${found} />
          </section>
          ${wanted && !found
            ? html`<div class="banner warn wide">No stored series ${wanted.symbol} at ${wanted.interval}: pick one above.</div>`
            : null}
          ${found ? html`<${Chart} key=${link(found)} selected=${found} series=${found} />` : null}
          <section class="panel wide" aria-labelledby="heat-title">
            <h2 id="heat-title">Completeness</h2>
            <${Heatmap} checks=${data.checks} />
          </section>
        </div>`
      : html`<${Empty}>No K-lines are stored yet. <span class="mono">tickbase up</span> collects the replayed series
          (REPLAY:*) every 5 minutes; enqueue <span class="mono">marketdata.klines.REPLAY:ES-1m</span> to collect now.<//>`}`;
}
