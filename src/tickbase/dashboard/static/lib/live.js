// Live updates: one WebSocket per tab, subscribed to the channels open pages
// need; when it cannot be had, every page falls back to polling over HTTP
// every 15 s (the reference documents' fallback) and says so.

import { session } from "./api.js";

export const POLL_SECONDS = 15;
const MAX_RETRY_MS = 60_000;

const handlers = new Map(); // channel -> Set(fn)
const modeListeners = new Set();
let socket = null;
let mode = "connecting"; // "live" | "polling" | "connecting"
let retryMs = 1000;
let retryTimer = null;
let nextId = 1;

function setMode(next) {
  if (mode === next) return;
  mode = next;
  for (const listener of modeListeners) listener(mode);
}

export function liveMode() {
  return mode;
}

export function onModeChange(listener) {
  modeListeners.add(listener);
  return () => modeListeners.delete(listener);
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function subscribeFrame(channel, action = "subscribe") {
  return { type: "request", requestId: `dash-${nextId++}`, action, params: { channel } };
}

function connect() {
  clearTimeout(retryTimer);
  const current = session();
  if (!current) {
    setMode("polling");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws?session=${encodeURIComponent(current.session)}`;
  let opened = false;
  try {
    socket = new WebSocket(url);
  } catch (_) {
    return retry();
  }
  socket.addEventListener("open", () => {
    for (const channel of handlers.keys()) send(subscribeFrame(channel));
    send({ type: "request", requestId: `dash-${nextId++}`, action: "ping", params: {} });
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    // Live once the gateway answers (an open socket a proxy then cuts is not live).
    if (frame.type === "success" && !opened) {
      opened = true;
      retryMs = 1000;
      setMode("live");
    }
    if (frame.type !== "update") return;
    for (const fn of handlers.get(frame.channel) || []) fn(frame.content);
  });
  socket.addEventListener("close", () => {
    socket = null;
    if (!opened) retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    retry();
  });
}

function retry() {
  setMode("polling");
  retryTimer = setTimeout(connect, retryMs + Math.random() * 500);
}

// Keep the socket alive (the gateway closes silent connections).
setInterval(() => send({ type: "request", requestId: `dash-${nextId++}`, action: "ping", params: {} }), 30_000);

export function startLive() {
  if (!socket) connect();
}

export function stopLive() {
  clearTimeout(retryTimer);
  if (socket) socket.close();
  socket = null;
}

// Call fn(content) with every push of channel; returns an unsubscribe.
export function listen(channel, fn) {
  if (!handlers.has(channel)) {
    handlers.set(channel, new Set());
    send(subscribeFrame(channel));
  }
  handlers.get(channel).add(fn);
  return () => {
    const set = handlers.get(channel);
    set.delete(fn);
    if (!set.size) {
      handlers.delete(channel);
      send(subscribeFrame(channel, "unsubscribe"));
    }
  };
}
