// A workflow's steps as a DAG: laid out by the vendored dagre, drawn as SVG here.
//
// Each step is a node (keyboard-focusable, named for assistive technology)
// coloured by its state; edges run from a step to the steps that run after
// it. The critical path (the chain of steps whose durations add up to the
// longest time through the graph) is computed here, in the browser, from the
// steps' task timings: a running step counts its time so far.

import dagre from "../vendor/dagre/dagre.esm.js";
import { html, useMemo } from "../vendor/htm-preact/standalone.module.js";
import { seconds } from "./ui.js";

const WIDTH = 190;
const HEIGHT = 66;
export const MAX_DRAWN = 300; // beyond that the layout is too slow and unreadable: table only

// What a step shows: its own state, or its task's while it is enqueued.
export function stepState(step) {
  if (step.status === "enqueued") return step.taskStatus === "running" || step.taskStatus === "retrying" ? step.taskStatus : "pending";
  return step.status || "defined";
}

// Seconds the step ran (so far, when running), or null before it started.
export function stepSeconds(step, now = Date.now()) {
  if (!step.startedAt) return null;
  const end = step.finishedAt ? Date.parse(step.finishedAt) : stepState(step) === "running" ? now : null;
  return end === null ? null : Math.max(0, (end - Date.parse(step.startedAt)) / 1000);
}

// What a step that has not started waits for, in words (null when it does not wait).
export function waitsFor(step, byName, run) {
  const state = stepState(step);
  if (state === "waiting") {
    const open = (step.after || []).filter((name) => byName.get(name)?.status !== "succeeded");
    if (open.length) return `waits for ${open.join(", ")}`;
    if (run && run.mode === "serial") return "waits for a free slot (serial run)";
    if (run && run.maxParallel) return `waits for a free slot (at most ${run.maxParallel} at once)`;
    return "waits to be enqueued";
  }
  if (state === "pending") return "queued: waits for a worker";
  if (state === "retrying") return "waits to retry";
  return null;
}

// The longest chain of step durations: {steps: Set, edges: Set("a>b"), seconds}.
export function criticalPath(steps, now = Date.now()) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const best = new Map();
  const prev = new Map();
  const visit = (name, trail = new Set()) => {
    if (best.has(name)) return best.get(name);
    if (trail.has(name) || !byName.has(name)) return 0; // defensive: a stored graph has no cycle
    trail.add(name);
    const step = byName.get(name);
    let longest = 0;
    let from = null;
    for (const upstream of step.after || []) {
      const total = visit(upstream, trail);
      if (from === null || total > longest) [longest, from] = [total, upstream];
    }
    const total = longest + (stepSeconds(step, now) || 0);
    best.set(name, total);
    prev.set(name, from);
    return total;
  };
  let end = null;
  for (const step of steps) if (end === null || visit(step.name) > best.get(end)) end = step.name;
  const path = { steps: new Set(), edges: new Set(), seconds: end === null ? 0 : best.get(end), order: [] };
  if (!path.seconds) return path;
  for (let at = end; at !== null; at = prev.get(at)) {
    path.steps.add(at);
    path.order.unshift(at);
    if (prev.get(at) !== null) path.edges.add(`${prev.get(at)}>${at}`);
  }
  return path;
}

function layout(steps) {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 22, ranksep: 60, marginx: 10, marginy: 10 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const step of steps) graph.setNode(step.name, { width: WIDTH, height: HEIGHT });
  for (const step of steps) for (const upstream of step.after || []) if (graph.hasNode(upstream)) graph.setEdge(upstream, step.name);
  dagre.layout(graph);
  const nodes = new Map(graph.nodes().map((name) => [name, graph.node(name)]));
  const edges = graph.edges().map((e) => ({ from: e.v, to: e.w, points: graph.edge(e).points }));
  const { width, height } = graph.graph();
  return { nodes, edges, width: Math.ceil(width), height: Math.ceil(height) };
}

function clock(value) {
  if (!value) return "";
  return new Date(value).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function cut(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function timing(step, now) {
  const ran = stepSeconds(step, now);
  if (ran === null) return "";
  return stepState(step) === "running" ? `${seconds(ran)} so far` : seconds(ran);
}

// Props: steps (name, after, and for a run: status, taskStatus, startedAt,
// finishedAt, taskId), run (for what a step waits for), selected, onSelect,
// critical (criticalPath() or null), now (ms), label.
export function Dag({ steps, run, selected, onSelect, critical, now = Date.now(), label }) {
  const shape = steps.map((s) => `${s.name}<${(s.after || []).join(",")}`).join(";");
  const drawn = useMemo(() => layout(steps), [shape]);
  const byName = new Map(steps.map((s) => [s.name, s]));
  const onKey = (event, name) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onSelect && onSelect(name);
    }
  };
  const line = (points) => points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
  return html`<div class="dag-scroll">
    <svg class="dag" role="group" aria-label=${label} width=${drawn.width} height=${drawn.height}
      viewBox=${`0 0 ${drawn.width} ${drawn.height}`}>
      <defs>
        <marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="dag-arrowhead" />
        </marker>
        <marker id="dag-arrow-critical" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="dag-arrowhead critical" />
        </marker>
      </defs>
      ${drawn.edges.map((e) => {
        const hot = critical && critical.edges.has(`${e.from}>${e.to}`);
        return html`<path key=${`${e.from}>${e.to}`} class=${`dag-edge${hot ? " critical" : ""}`} d=${line(e.points)}
          marker-end=${hot ? "url(#dag-arrow-critical)" : "url(#dag-arrow)"} data-edge=${`${e.from}>${e.to}`} />`;
      })}
      ${steps.map((step) => {
        const at = drawn.nodes.get(step.name);
        if (!at) return null;
        const state = stepState(step);
        const onPath = critical && critical.steps.has(step.name);
        const waits = run ? waitsFor(step, byName, run) : null;
        const ran = timing(step, now);
        const detail = run
          ? waits || (step.finishedAt ? `${clock(step.startedAt)} → ${clock(step.finishedAt)}` : step.startedAt ? `since ${clock(step.startedAt)}` : "")
          : step.taskType;
        const when = [step.startedAt ? `started ${clock(step.startedAt)}` : "", step.finishedAt ? `finished ${clock(step.finishedAt)}` : ""];
        const name = [
          `Step ${step.name}`,
          run ? state : `task type ${step.taskType}`,
          ran,
          run ? waits || when.filter(Boolean).join(", ") : "",
          onPath ? "on the critical path" : "",
        ].filter(Boolean).join(", ");
        const x = at.x - WIDTH / 2;
        const y = at.y - HEIGHT / 2;
        return html`<g key=${step.name} class=${`dag-step ${state}${onPath ? " critical" : ""}${selected === step.name ? " selected" : ""}`}
          transform=${`translate(${x.toFixed(1)},${y.toFixed(1)})`} tabindex="0" role="button" aria-label=${name}
          aria-pressed=${selected === step.name ? "true" : "false"} data-step=${step.name} data-state=${state}
          onClick=${() => onSelect && onSelect(step.name)} onKeyDown=${(event) => onKey(event, step.name)}>
          <title>${name}</title>
          <rect class="box" width=${WIDTH} height=${HEIGHT} rx="8" />
          <rect class="band" width="6" height=${HEIGHT} rx="3" />
          <text x="14" y="20" class="name">${cut(step.name, 22)}</text>
          <text x="14" y="38" class="state">${run ? `${state}${ran ? ` · ${ran}` : ""}` : cut(step.taskType || "", 26)}</text>
          ${run && detail ? html`<text x="14" y="55" class="detail">${cut(detail, 28)}</text>` : null}
        </g>`;
      })}
    </svg>
  </div>`;
}
