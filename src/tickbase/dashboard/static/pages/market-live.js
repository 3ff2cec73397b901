// The market page's live view: the real-time pipeline's K-lines over the WebSocket
// `kline` channel, drawn as they form (the forming candle redrawn in place, final
// ones appended). Symbols and intervals come from GET /api/v1/realtime; the chosen
// series lives in the URL (?live=BTCUSDT&liveInterval=1m). Bar times in the frames
// are epoch milliseconds (Binance's convention).

import {
  HistogramSeries,
  createChart,
} from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { api } from "../lib/api.js";
import { follow } from "../lib/live.js";
import { ErrorNote, html, navigate, queryParams, seconds, useLiveMode, useLoad, useNow, withQuery } from "../lib/ui.js";
import { useEffect, useRef, useState } from "../vendor/htm-preact/standalone.module.js";
import { addCandles, crosshairLabel, cssVar, number, tickLabel } from "./market-chart.js";

const KEPT = 500; // bars the view holds (it starts from the pipeline's last 16 final ones)

function candle(bar) {
  return { time: Math.floor(bar.openTime / 1000), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}

function volume(bar) {
  return { time: Math.floor(bar.openTime / 1000), value: bar.volume, color: (bar.close >= bar.open ? cssVar("--ok") : cssVar("--bad")) + "66" };
}

function makeChart(container) {
  const border = cssVar("--border");
  const chart = createChart(container, {
    autoSize: true,
    layout: { background: { type: "solid", color: cssVar("--panel") }, textColor: cssVar("--text") },
    grid: { vertLines: { color: border + "55" }, horzLines: { color: border + "55" } },
    rightPriceScale: { borderColor: border },
    // Wide candles from the start: a live view begins with a few bars only.
    timeScale: { borderColor: border, timeVisible: true, secondsVisible: false, barSpacing: 14, rightOffset: 4, tickMarkFormatter: tickLabel },
    localization: { timeFormatter: crosshairLabel(true) },
  });
  const candles = addCandles(chart);
  // Candles above, volume in the bottom fifth: they never overlap.
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
  const volumes = chart.addSeries(HistogramSeries, { priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false });
  volumes.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  return { chart, candles, volumes };
}

// Follow one series: bars by open time, drawn in place as update frames arrive.
function useLiveBars(symbol, interval, box) {
  const [state, setState] = useState({ bars: 0, finals: 0, last: null, lastAt: null, error: null });
  useEffect(() => {
    if (!box.current) return undefined;
    const drawn = makeChart(box.current);
    const bars = new Map(); // openTime -> bar
    let newest = -Infinity;
    let finals = 0;
    const onBar = (bar) => {
      const old = bars.get(bar.openTime);
      if (bar.isFinal && !(old && old.isFinal)) finals += 1;
      bars.set(bar.openTime, bar);
      if (bar.openTime >= newest) {
        // The forming candle (same time) is replaced in place; a new one appended.
        newest = bar.openTime;
        drawn.candles.update(candle(bar));
        drawn.volumes.update(volume(bar));
      } else {
        // An older bar (the catch-up after a reconnect): redraw the whole series.
        const sorted = [...bars.values()].sort((a, b) => a.openTime - b.openTime).slice(-KEPT);
        drawn.candles.setData(sorted.map(candle));
        drawn.volumes.setData(sorted.map(volume));
      }
      if (bars.size > KEPT) {
        const oldest = Math.min(...bars.keys());
        if (bars.get(oldest).isFinal) finals -= 1;
        bars.delete(oldest);
      }
      setState({ bars: bars.size, finals, last: bars.get(newest), lastAt: Date.now(), error: null });
    };
    const onError = (error) => setState((old) => ({ ...old, error }));
    const stop = follow({ channel: "kline", symbol, interval }, onBar, onError);
    return () => {
      stop();
      drawn.chart.remove();
    };
  }, [symbol, interval]);
  return state;
}

function LiveChart({ symbol, interval }) {
  const box = useRef(null);
  const live = useLiveBars(symbol, interval, box);
  const mode = useLiveMode();
  useNow(500); // the age below grows on screen between frames
  const connection =
    mode === "live" ? "connected" : mode === "polling" ? "WebSocket unavailable: live bars need it" : "connecting…";
  const last = live.last;
  return html`
    <p class="live-status" data-connection=${mode}>
      <span class=${`status ${mode === "live" ? "fresh" : "stale"}`}>${connection}</span>${" · "}
      ${live.lastAt
        ? html`last update <span class="mono" data-age>${seconds(Math.max(0, Date.now() - live.lastAt) / 1000)}</span> ago${" · "}
            <span data-bars=${live.bars}>${live.bars} bars</span> (${live.finals} final)`
        : html`waiting for the first bar…`}
    </p>
    ${live.error ? html`<${ErrorNote} error=${live.error} />` : null}
    ${last
      ? html`<p class="legend" aria-label="The newest bar">
          <span>${new Date(last.openTime).toLocaleTimeString()}</span>
          <span><span class="muted">O</span> ${number(last.open)}</span> <span><span class="muted">H</span> ${number(last.high)}</span>
          <span><span class="muted">L</span> ${number(last.low)}</span> <span><span class="muted">C</span> ${number(last.close)}</span>
          <span><span class="muted">V</span> ${number(last.volume)}</span> <span><span class="muted">trades</span> ${last.tradeCount}</span>
          <span class=${`flag ${last.isFinal ? "final" : "forming"}`}>${last.isFinal ? "final" : "forming"}</span>
        </p>`
      : null}
    <div class="live-chart" ref=${box} role="img" data-bars=${live.bars} data-finals=${live.finals}
      data-close=${last ? last.close : ""}
      aria-label=${`Live K-line chart of ${symbol} at ${interval}: ${live.bars} bars, the newest ${last && !last.isFinal ? "still forming" : "final"}`}></div>`;
}

function Pickers({ info, symbol, interval }) {
  const go = (next) => navigate(withQuery(location.pathname, { ...queryParams(), ...next }), { replace: true });
  return html`<div class="section-head-controls">
    <div class="picker"><label for="live-symbol">Symbol</label>
      <select id="live-symbol" value=${symbol} onChange=${(e) => go({ live: e.target.value })}>
        ${info.symbols.map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
    </div>
    <div class="picker"><label for="live-interval">Interval</label>
      <select id="live-interval" value=${interval} onChange=${(e) => go({ liveInterval: e.target.value })}>
        ${info.intervals.map((i) => html`<option value=${i}>${i}</option>`)}
      </select>
    </div>
  </div>`;
}

export function LivePanel() {
  const params = queryParams();
  const { data: info, error } = useLoad(() => api("realtime"), []);
  const title = html`<h2 id="live-title">Live K-lines</h2>`;
  if (!info)
    return html`<section class="panel wide" aria-labelledby="live-title">${title}
      ${error ? html`<${ErrorNote} error=${error} />` : html`<p class="muted">Looking for the real-time pipeline…</p>`}</section>`;
  if (!info.running || !info.symbols.length)
    return html`<section class="panel wide live-off" aria-labelledby="live-title">${title}
      <p data-realtime="off">The real-time pipeline is not running on this gateway process, so there are no live bars.${" "}
        <span class="mono">tickbase up</span> runs it (from a live stream, or from replay when none answers).</p></section>`;
  const symbol = info.symbols.includes(params.live) ? params.live : info.symbols[0];
  const interval = info.intervals.includes(params.liveInterval) ? params.liveInterval : info.intervals[0];
  return html`<section class="panel wide" aria-labelledby="live-title">
    <div class="section-head">${title}<${Pickers} info=${info} symbol=${symbol} interval=${interval} /></div>
    <p class="muted small">Bars of the pipeline's <span class="mono">${info.source}</span> source${info.live ? " (trade times are now)" : ""},
      pushed over the WebSocket as trades arrive; times in your browser's zone.</p>
    <${LiveChart} key=${`${symbol} ${interval}`} symbol=${symbol} interval=${interval} />
  </section>`;
}
