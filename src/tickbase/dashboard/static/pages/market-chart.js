// The market page's K-line chart (TradingView lightweight-charts 5): candlesticks,
// volume, the six indicators the project computes (EMA21, EMA55, Bollinger on the
// price pane; RSI, MACD, ATR in their own panes), and markers on filled, anomalous
// and stale bars. Times on the axis and the crosshair are the browser's zone.

import {
  CandlestickSeries,
  HistogramSeries,
  LineSeries,
  createChart,
  createSeriesMarkers,
} from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { Time, html } from "../lib/ui.js";
import { useEffect, useRef, useState } from "../vendor/htm-preact/standalone.module.js";

// What can be drawn besides the candles, in the order of the checkboxes.
export const LAYERS = [
  ["volume", "Volume", true],
  ["ema21", "EMA 21", true],
  ["ema55", "EMA 55", true],
  ["bb", "Bollinger (20, 2σ)", true],
  ["rsi", "RSI 14", true],
  ["macd", "MACD (12, 26, 9)", true],
  ["atr", "ATR 14", false],
];

const COLORS = {
  ema21: "#e67e22",
  ema55: "#8e44ad",
  bb: "#2e86c1",
  rsi: "#c0392b",
  macd: "#2e86c1",
  signal: "#e67e22",
  atr: "#16a085",
};

const seconds = (iso) => Math.floor(Date.parse(iso) / 1000);

export function number(value, digits = 6) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, useGrouping: false });
}

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// Axis labels in the browser's zone (the library itself labels in UTC).
export function tickLabel(time, type) {
  const d = new Date(time * 1000);
  if (type === 0) return String(d.getFullYear());
  if (type === 1) return d.toLocaleDateString(undefined, { month: "short", year: "2-digit" });
  if (type === 2) return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (type === 4) opts.second = "2-digit";
  return d.toLocaleTimeString(undefined, opts);
}

/** Candles in the theme's up/down colours (the stored chart and the live one). */
export function addCandles(chart) {
  return chart.addSeries(CandlestickSeries, {
    upColor: cssVar("--ok"),
    downColor: cssVar("--bad"),
    borderVisible: false,
    wickUpColor: cssVar("--ok"),
    wickDownColor: cssVar("--bad"),
  });
}

export function crosshairLabel(intraday) {
  return (time) => {
    const d = new Date(time * 1000);
    return intraday
      ? d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
      : d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  };
}

// The bars the chart marks: filled (forward-filled, not traded), anomaly (moved
// more than 20%), and the last one when the series is stale.
export function markedBars(bars, stale) {
  const marks = [];
  for (const bar of bars) {
    if (bar.isFilled) marks.push({ bar, kind: "filled", note: "forward-filled: not traded" });
    if (bar.isAnomaly) marks.push({ bar, kind: "anomaly", note: "close moved more than 20% from the previous" });
  }
  if (stale && bars.length) marks.push({ bar: bars[bars.length - 1], kind: "stale", note: "the newest bar is overdue" });
  return marks.sort((a, b) => Date.parse(a.bar.openTime) - Date.parse(b.bar.openTime));
}

function marker({ bar, kind }) {
  const time = seconds(bar.openTime);
  if (kind === "filled") return { time, position: "belowBar", shape: "circle", color: cssVar("--warn"), text: "filled" };
  if (kind === "anomaly") return { time, position: "aboveBar", shape: "arrowDown", color: cssVar("--bad"), text: "anomaly" };
  return { time, position: "aboveBar", shape: "square", color: cssVar("--muted"), text: "stale" };
}

function line(chart, values, key, color, pane, title) {
  const series = chart.addSeries(
    LineSeries,
    { color, lineWidth: 1.5, title, priceLineVisible: false, lastValueVisible: false },
    pane,
  );
  series.setData(values.filter((v) => v[key] !== null).map((v) => ({ time: seconds(v.openTime), value: v[key] })));
  return series;
}

function draw(container, bars, indicators, shown, marks, intraday) {
  const text = cssVar("--text");
  const border = cssVar("--border");
  const chart = createChart(container, {
    autoSize: true,
    layout: {
      background: { type: "solid", color: cssVar("--panel") },
      textColor: text,
      panes: { separatorColor: border },
    },
    grid: { vertLines: { color: border + "55" }, horzLines: { color: border + "55" } },
    rightPriceScale: { borderColor: border },
    timeScale: { borderColor: border, timeVisible: intraday, tickMarkFormatter: tickLabel },
    localization: { timeFormatter: crosshairLabel(intraday) },
  });
  const candles = addCandles(chart);
  candles.setData(bars.map((b) => ({ time: seconds(b.openTime), open: b.open, high: b.high, low: b.low, close: b.close })));
  createSeriesMarkers(candles, marks.map(marker));
  const drawn = ["candles"];
  if (shown.volume) {
    const volume = chart.addSeries(HistogramSeries, { priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    volume.setData(
      bars.map((b) => ({ time: seconds(b.openTime), value: b.volume, color: (b.close >= b.open ? cssVar("--ok") : cssVar("--bad")) + "66" })),
    );
    drawn.push("volume");
  }
  for (const [key, title] of [["ema21", "EMA 21"], ["ema55", "EMA 55"]]) {
    if (!shown[key]) continue;
    line(chart, indicators, key, COLORS[key], 0, title);
    drawn.push(key);
  }
  if (shown.bb) {
    for (const key of ["bbUpper", "bbMiddle", "bbLower"]) line(chart, indicators, key, COLORS.bb, 0, key === "bbMiddle" ? "BB 20" : "");
    drawn.push("bb");
  }
  let pane = 0;
  if (shown.rsi) {
    pane += 1;
    line(chart, indicators, "rsi14", COLORS.rsi, pane, "RSI 14");
    drawn.push("rsi");
  }
  if (shown.macd) {
    pane += 1;
    const hist = chart.addSeries(HistogramSeries, { priceLineVisible: false, lastValueVisible: false, title: "" }, pane);
    hist.setData(
      indicators
        .filter((v) => v.macdHist !== null)
        .map((v) => ({ time: seconds(v.openTime), value: v.macdHist, color: (v.macdHist >= 0 ? cssVar("--ok") : cssVar("--bad")) + "99" })),
    );
    line(chart, indicators, "macd", COLORS.macd, pane, "MACD");
    line(chart, indicators, "macdSignal", COLORS.signal, pane, "signal");
    drawn.push("macd");
  }
  if (shown.atr) {
    pane += 1;
    line(chart, indicators, "atr14", COLORS.atr, pane, "ATR 14");
    drawn.push("atr");
  }
  const panes = chart.panes();
  for (let i = 0; i < panes.length; i++) panes[i].setStretchFactor(i === 0 ? 4 : 1);
  return { chart, candles, drawn };
}

function Legend({ bar, values }) {
  if (!bar) return null;
  const v = values || {};
  const item = (label, value, digits = 6) => html`<span><span class="muted">${label}</span> ${number(value, digits)}</span>`;
  return html`<p class="legend" aria-label="Values of the bar under the cursor (the newest when none)">
    <${Time} value=${bar.openTime} />
    ${item("O", bar.open)} ${item("H", bar.high)} ${item("L", bar.low)} ${item("C", bar.close)} ${item("V", bar.volume)}
    ${item("EMA21", v.ema21, 4)} ${item("EMA55", v.ema55, 4)} ${item("RSI", v.rsi14, 2)}
    ${item("MACD", v.macd, 4)} ${item("ATR", v.atr14, 4)}
    ${bar.isFilled ? html`<span class="flag filled">filled</span>` : null}
    ${bar.isAnomaly ? html`<span class="flag anomaly">anomaly</span>` : null}
  </p>`;
}

export function KlineChart({ bars, indicators, shown, stale, interval }) {
  const box = useRef(null);
  const [hover, setHover] = useState(null);
  const [theme, setTheme] = useState(matchMedia("(prefers-color-scheme: dark)").matches);
  const [drawn, setDrawn] = useState([]);
  const marks = markedBars(bars, stale);
  const byTime = new Map(bars.map((b) => [seconds(b.openTime), b]));
  const valuesAt = new Map(indicators.map((v) => [seconds(v.openTime), v]));
  const shownKey = LAYERS.map(([key]) => (shown[key] ? key : "")).join(",");
  const intraday = !/[dwM]$/.test(interval);
  useEffect(() => {
    const query = matchMedia("(prefers-color-scheme: dark)");
    const change = () => setTheme(query.matches);
    query.addEventListener("change", change);
    return () => query.removeEventListener("change", change);
  }, []);
  const range = useRef(null);
  useEffect(() => {
    if (!box.current || !bars.length) return undefined;
    const made = draw(box.current, bars, indicators, shown, marks, intraday);
    if (range.current) made.chart.timeScale().setVisibleLogicalRange(range.current);
    made.chart.subscribeCrosshairMove((param) => setHover(param.time === undefined ? null : param.time));
    setDrawn(made.drawn);
    return () => {
      range.current = made.chart.timeScale().getVisibleLogicalRange();
      made.chart.remove();
    };
  }, [bars, indicators, shownKey, theme]);
  useEffect(() => {
    range.current = null;
  }, [bars.length && bars[0].symbol, interval]);
  const last = bars[bars.length - 1];
  const bar = (hover !== null && byTime.get(hover)) || last;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return html`
    <${Legend} bar=${bar} values=${bar ? valuesAt.get(seconds(bar.openTime)) : null} />
    <div
      class="kline-chart"
      ref=${box}
      role="img"
      aria-label=${`K-line chart of ${bars.length} bars, times in ${zone}; the marked bars are listed below`}
      data-series=${drawn.join(" ")}
      data-markers=${marks.length}
    ></div>
    <p class="muted small">Time axis in your browser's zone (${zone}). ${bars.length} newest bars.</p>
    <details class="marked" open=${marks.length > 0}>
      <summary>Marked bars (${marks.length})</summary>
      ${marks.length
        ? html`<ul aria-label="Marked bars">${marks.map(
            (m) => html`<li data-kind=${m.kind}><span class=${`flag ${m.kind}`}>${m.kind}</span> <${Time} value=${m.bar.openTime} />${": "}${m.note} (close ${number(m.bar.close)})</li>`,
          )}</ul>`
        : html`<p class="muted">No filled, anomalous or stale bar among these.</p>`}
    </details>`;
}
