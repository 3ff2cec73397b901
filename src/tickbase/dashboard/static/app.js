// The dashboard's shell: sign-in, navigation, the live-update state, and the router.

import { render, useEffect, useState } from "./vendor/htm-preact/standalone.module.js";
import { onSessionChange, session, signIn, signOut } from "./lib/api.js";
import { startLive, stopLive } from "./lib/live.js";
import { ErrorNote, html, navigate, useLiveMode } from "./lib/ui.js";
import { Alerts } from "./pages/alerts.js";
import { Limits } from "./pages/limits.js";
import { Market } from "./pages/market.js";
import { Nodes } from "./pages/nodes.js";
import { Overview } from "./pages/overview.js";
import { Schedule, Schedules } from "./pages/schedules.js";
import { Task } from "./pages/task.js";
import { Tasks } from "./pages/tasks.js";
import { WORKFLOW_ROUTES } from "./pages/workflows.js";

const NAV = [
  ["/", "Overview"],
  ["/tasks", "Tasks"],
  ["/schedules", "Schedules"],
  ["/workflows", "Workflows"],
  ["/nodes", "Nodes"],
  ["/alerts", "Alerts"],
  ["/limits", "Limits"],
  ["/market", "Market data"],
];

const ROUTES = [
  [/^\/$/, () => html`<${Overview} />`],
  [/^\/tasks$/, () => html`<${Tasks} />`],
  [/^\/tasks\/(\d+)$/, (id) => html`<${Task} id=${id} key=${id} />`],
  [/^\/nodes$/, () => html`<${Nodes} />`],
  [/^\/alerts$/, () => html`<${Alerts} />`],
  [/^\/limits$/, () => html`<${Limits} />`],
  [/^\/schedules(?:\/([^/]+))?$/, (name) => (name ? html`<${Schedule} name=${decodeURIComponent(name)} key=${name} />` : html`<${Schedules} />`)],
  [/^\/market$/, () => html`<${Market} />`],
  ...WORKFLOW_ROUTES,
];

function usePath() {
  const [path, setPath] = useState(location.pathname + location.search);
  useEffect(() => {
    const update = () => setPath(location.pathname + location.search);
    window.addEventListener("popstate", update);
    window.addEventListener("tickbase:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("tickbase:navigate", update);
    };
  }, []);
  return path;
}

// Same-origin links change the view without a reload.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/docs")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

function SignIn() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(new FormData(event.target).get("token") || "");
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="signin">
    <div class="panel">
      <h1>Sign in to tickbase</h1>
      <p>Paste an API token. <code>tickbase up</code> printed the first admin's; make others with
        <code>tickbase tokens create --role viewer</code>. The token is exchanged for a session and not kept.</p>
      <form class="stack" onSubmit=${submit}>
        <label>API token
          <input name="token" type="password" autocomplete="off" required placeholder="tb_…" autofocus />
        </label>
        <p><button class="primary" type="submit" disabled=${busy}>Sign in</button></p>
      </form>
      <${ErrorNote} error=${error} />
    </div>
  </main>`;
}

function LiveState() {
  const mode = useLiveMode();
  const text =
    mode === "live" ? "Live" : mode === "polling" ? "Live updates unavailable: refreshing every 15 s" : "Connecting…";
  return html`<span class=${`live-state ${mode}`} role="status">${text}</span>`;
}

function Layout({ path, children }) {
  const current = session();
  const pathname = path.split("?")[0];
  const active = (href) => (href === "/" ? pathname === "/" : pathname.startsWith(href));
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="/">tickbase</a>
      <nav class="main" aria-label="Main">
        <ul>${NAV.map(
          ([href, label]) => html`<li><a href=${href} aria-current=${active(href) ? "page" : undefined}>${label}</a></li>`,
        )}</ul>
      </nav>
      <div class="who">
        <${LiveState} />
        <span>${current.role}</span>
        <button onClick=${() => signOut()}>Sign out</button>
      </div>
    </header>
    <main id="main" tabindex="-1">${children}</main>`;
}

function NotFound() {
  return html`<h1>Not found</h1><p>No page here. <a href="/">Go to the overview</a>.</p>`;
}

function App() {
  const [current, setCurrent] = useState(session());
  const path = usePath();
  useEffect(() => onSessionChange(setCurrent), []);
  useEffect(() => {
    if (current) startLive();
    else stopLive();
  }, [current && current.session]);
  if (!current) return html`<${SignIn} />`;
  const pathname = path.split("?")[0];
  if (pathname === "/sign-in") {
    navigate("/", { replace: true });
    return null;
  }
  for (const [pattern, view] of ROUTES) {
    const match = pathname.match(pattern);
    if (match) return html`<${Layout} path=${path}>${view(...match.slice(1))}<//>`;
  }
  return html`<${Layout} path=${path}><${NotFound} /><//>`;
}

render(html`<${App} />`, document.getElementById("app"));
