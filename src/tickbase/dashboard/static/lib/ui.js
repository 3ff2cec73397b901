// Small shared pieces: times, the URL as the page's state, status badges, hooks.

import { html, useEffect, useState, useRef } from "../vendor/htm-preact/standalone.module.js";
import { POLL_SECONDS, listen, liveMode, onModeChange } from "./live.js";

export { html };

// Times in the browser's zone; the UTC instant on hover.
export function Time({ value }) {
  if (!value) return html`<span class="muted">—</span>`;
  const date = new Date(value);
  const local = date.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  return html`<time datetime=${date.toISOString()} title=${`${date.toISOString().replace(".000", "")} UTC`}>${local}</time>`;
}

export function seconds(value) {
  if (value === null || value === undefined) return "—";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

export function duration(from, to) {
  if (!from || !to) return "—";
  return seconds((Date.parse(to) - Date.parse(from)) / 1000);
}

export function Status({ value }) {
  return html`<span class=${`status ${value}`}>${value}</span>`;
}

// The query string is the page's state: filters and selection survive a
// reload and a shared link opens the same view.
export function queryParams() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event("tickbase:navigate"));
}

export function withQuery(path, params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

export function useLiveMode() {
  const [mode, setMode] = useState(liveMode());
  useEffect(() => onModeChange(setMode), []);
  return mode;
}

// Load data, then keep it fresh: on each push of one of `channels` while the
// WebSocket is up (at most one reload per `minGapMs`), else every 15 s.
// Returns {data, error, loading, reload}.
export function useLoad(load, deps, { channels = [], minGapMs = 1000, onPush } = {}) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const mode = useLiveMode();
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = async () => {
    try {
      const data = await loadRef.current();
      setState({ data, error: null, loading: false });
    } catch (error) {
      setState((old) => ({ data: old.data, error, loading: false }));
    }
  };
  useEffect(() => {
    setState((old) => ({ ...old, loading: true }));
    reload();
  }, deps);
  useEffect(() => {
    if (mode === "live") {
      let last = 0;
      let timer = null;
      const unlisten = channels.map((channel) =>
        listen(channel, (content) => {
          if (onPush && onPush(content, setState) === false) return;
          const wait = Math.max(0, last + minGapMs - Date.now());
          clearTimeout(timer);
          timer = setTimeout(() => {
            last = Date.now();
            reload();
          }, wait);
        }),
      );
      return () => {
        clearTimeout(timer);
        unlisten.forEach((undo) => undo());
      };
    }
    const interval = setInterval(reload, POLL_SECONDS * 1000);
    return () => clearInterval(interval);
  }, [mode, ...deps]);
  return { ...state, reload };
}

export function ErrorNote({ error }) {
  if (!error) return null;
  const hint =
    error.status === 403
      ? "Your session is a viewer's: sign in with an admin token to do this."
      : error.status === 0
        ? "Check that the gateway runs (tickbase up) and reload."
        : "";
  return html`<div class="banner bad" role="alert">${error.message}${hint ? html` — ${hint}` : ""}</div>`;
}

// JSON as the task or schedule holds it, indented; "none" for no value.
export function Json({ value }) {
  if (value === null || value === undefined) return html`<span class="muted">none</span>`;
  return html`<pre>${JSON.stringify(value, null, 2)}</pre>`;
}

// The current time, ticking every `everyMs` while `active` (for ages and
// running durations that grow on screen without a reload).
export function useNow(everyMs = 1000, active = true) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs, active]);
  return now;
}

export function Empty({ children }) {
  return html`<div class="empty">${children}</div>`;
}
