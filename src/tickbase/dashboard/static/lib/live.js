// Live updates: one WebSocket per tab, subscribed to the channels open pages
// need; when it cannot be had, every page falls back to polling over HTTP
// every 15 s (the reference documents' fallback) and says so.

import { session } from "./api.js";

export const POLL_SECONDS = 15;
const MAX_RETRY_MS = 60_000;

// What the open pages follow, by topic: a channel ("tasks"), or a kline series
// ("kline BTCUSDT 1m", subscribed with its symbol and interval).
const topics = new Map(); // topic -> {params, fns: Set(fn), errors: Set(fn)}
const requests = new Map(); // requestId of a subscribe -> topic (to route its error)
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

function topicOf(params) {
  return params.channel === "kline" ? `kline ${params.symbol} ${params.interval}` : params.channel;
}

function frameTopic(frame) {
  const c = frame.content || {};
  return frame.channel === "kline" ? `kline ${c.symbol} ${c.interval}` : frame.channel;
}

function subscribeFrame(params, action = "subscribe") {
  const requestId = `dash-${nextId++}`;
  if (action === "subscribe") {
    requests.set(requestId, topicOf(params));
    if (requests.size > 200) requests.delete(requests.keys().next().value); // answered long ago
  }
  return { type: "request", requestId, action, params };
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
    for (const topic of topics.values()) send(subscribeFrame(topic.params));
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
    if (frame.type === "error" && requests.has(frame.requestId)) {
      const topic = topics.get(requests.get(frame.requestId));
      for (const fn of topic ? topic.errors : []) fn(frame.error);
    }
    if (frame.type === "success" || frame.type === "error") requests.delete(frame.requestId);
    if (frame.type !== "update") return;
    const topic = topics.get(frameTopic(frame));
    for (const fn of topic ? topic.fns : []) fn(frame.content);
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
  return follow({ channel }, fn);
}

// Call fn(content) with every push of the subscription `params` (a channel, or
// {channel: "kline", symbol, interval}), and onError(error) when the gateway
// refuses it (again after each reconnect); returns an unsubscribe.
export function follow(params, fn, onError) {
  const key = topicOf(params);
  let topic = topics.get(key);
  if (!topic) {
    topic = { params, fns: new Set(), errors: new Set() };
    topics.set(key, topic);
    send(subscribeFrame(params));
  }
  topic.fns.add(fn);
  if (onError) topic.errors.add(onError);
  return () => {
    topic.fns.delete(fn);
    if (onError) topic.errors.delete(onError);
    if (!topic.fns.size) {
      topics.delete(key);
      send(subscribeFrame(params, "unsubscribe"));
    }
  };
}
