// The gateway's HTTP API as the dashboard uses it: the session, and errors a person can act on.
//
// The pasted API token is sent once, to POST /api/v1/auth/session, and then
// forgotten; only the signed session is kept (localStorage, so other tabs
// share it; never in a URL). It is renewed before it expires; when the
// gateway refuses it (expired, its token revoked) the page asks to sign in.

const KEY = "tickbase.session";
const RENEW_BEFORE_MS = 5 * 60 * 1000;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function session() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) || "null");
    if (stored && Date.parse(stored.expiresAt) > Date.now()) return stored;
  } catch (_) {
    /* unreadable: treated as signed out */
  }
  return null;
}

export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function store(value) {
  if (value) localStorage.setItem(KEY, JSON.stringify(value));
  else localStorage.removeItem(KEY);
  for (const listener of listeners) listener(value);
}

async function exchange(credential) {
  const response = await fetch("/api/v1/auth/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${credential}` },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new ApiError(response.status, error.code, error.message || response.statusText);
  }
  return { session: body.session, expiresAt: body.expiresAt, role: body.role };
}

export async function signIn(token) {
  const trimmed = token.trim();
  if (!trimmed) throw new ApiError(0, "EMPTY", "paste an API token (tickbase tokens create)");
  store(await exchange(trimmed));
}

export function signOut() {
  store(null);
}

window.addEventListener("storage", (event) => {
  if (event.key === KEY) for (const listener of listeners) listener(session());
});

let renewing = null;
async function renewIfDue() {
  const current = session();
  if (!current || Date.parse(current.expiresAt) - Date.now() > RENEW_BEFORE_MS) return;
  renewing ??= exchange(current.session)
    .then(store)
    .catch(() => {})
    .finally(() => (renewing = null));
  await renewing;
}
setInterval(renewIfDue, 60 * 1000);

export function canWrite() {
  return session()?.role === "admin";
}

// One request to the API: JSON in and out, the session attached; a refused
// session signs out (the page then shows the sign-in form).
export async function api(path, { method = "GET", body, query } = {}) {
  await renewIfDue();
  const current = session();
  let url = path.startsWith("/") ? path : `/api/v1/${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const headers = {};
  if (current) headers.Authorization = `Bearer ${current.session}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (_) {
    throw new ApiError(0, "UNREACHABLE", "the gateway does not answer: is tickbase still running?");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) store(null);
    throw new ApiError(response.status, error.code, error.message || response.statusText, error.details);
  }
  return data;
}
