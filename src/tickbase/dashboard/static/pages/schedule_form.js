// Create or edit a schedule (admins). The timing is checked as it is typed:
// ~250 ms after the last keystroke the gateway computes the next five fires
// (POST /api/v1/schedules/preview, the scheduler's own code), shown in the
// schedule's zone and the browser's, or says what is wrong with it.

import { api } from "../lib/api.js";
import { ErrorNote, html } from "../lib/ui.js";
import { useEffect, useRef, useState } from "../vendor/htm-preact/standalone.module.js";

const DEBOUNCE_MS = 250;
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const ZONES = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];

// An instant as a wall time in `zone`, with the zone's abbreviation.
export function inZone(iso, zone) {
  try {
    return new Intl.DateTimeFormat(undefined, {
      timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    }).format(new Date(iso));
  } catch (_) {
    return iso;
  }
}

function initial(schedule) {
  if (!schedule) {
    return { name: "", taskType: "", kind: "cron", cron: "", intervalSeconds: "", timezone: BROWSER_ZONE, queue: "default", payload: "{}" };
  }
  return {
    name: schedule.name,
    taskType: schedule.taskType,
    kind: schedule.kind,
    cron: schedule.cron || "",
    intervalSeconds: schedule.intervalSeconds === null ? "" : String(schedule.intervalSeconds),
    timezone: schedule.timezone,
    queue: schedule.queue,
    payload: JSON.stringify(schedule.payload ?? {}, null, 2),
  };
}

// The next fires of the typed timing, fetched after a pause in the typing;
// answers to older keystrokes are dropped.
function usePreview({ kind, cron, intervalSeconds, timezone }) {
  const [state, setState] = useState({ fires: null, error: null, busy: false });
  const sequence = useRef(0);
  useEffect(() => {
    const mine = ++sequence.current;
    if (kind === "manual") {
      setState({ fires: [], error: null, busy: false, manual: true });
      return undefined;
    }
    const blank = kind === "cron" ? !cron.trim() : !String(intervalSeconds).trim();
    if (blank) {
      setState({ fires: null, error: null, busy: false });
      return undefined;
    }
    const interval = Number(intervalSeconds);
    if (kind === "interval" && !(interval > 0)) {
      setState({ fires: null, error: { message: "the interval must be a number of seconds above 0", field: "interval" }, busy: false });
      return undefined;
    }
    setState((old) => ({ ...old, busy: true }));
    const timer = setTimeout(async () => {
      const body = kind === "cron" ? { cron: cron.trim(), timezone } : { intervalSeconds: interval, timezone };
      try {
        const answer = await api("schedules/preview", { method: "POST", body });
        if (mine === sequence.current) setState({ fires: answer.fires, error: null, busy: false });
      } catch (failure) {
        if (mine !== sequence.current) return;
        const field = failure.details && failure.details.field ? failure.details.field
          : Array.isArray(failure.details) && failure.details.length ? "interval" : kind;
        const message = Array.isArray(failure.details) && failure.details.length
          ? `${failure.details[0].path.replace("body.", "")}: ${failure.details[0].message}`
          : failure.message;
        setState({ fires: null, error: { message, field, status: failure.status }, busy: false });
      }
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [kind, cron, intervalSeconds, timezone]);
  return state;
}

function Preview({ state, timezone }) {
  let body;
  if (state.manual) body = html`<p class="muted">A manual schedule never fires by itself: use Trigger now.</p>`;
  else if (state.error) body = null;
  else if (!state.fires) body = html`<p class="muted">Type a cron expression or an interval to see its next fires.</p>`;
  else {
    body = html`<ol class="fires" aria-label="Next five fires">${state.fires.map(
      (fire) => html`<li>
        <time datetime=${fire} data-zone=${timezone}>${inZone(fire, timezone)}</time>
        ${timezone !== BROWSER_ZONE ? html`<span class="muted">your time ${inZone(fire, BROWSER_ZONE)}</span>` : null}
      </li>`,
    )}</ol>`;
  }
  return html`<section class="panel preview" aria-labelledby="preview-heading">
    <h2 id="preview-heading">Next fires ${state.busy ? html`<span class="muted">(checking…)</span>` : null}</h2>
    <div aria-live="polite">
      <p class="field-error" id="timing-error">${state.error ? state.error.message : ""}</p>
      ${body}
    </div>
    <p class="label">In ${timezone}${timezone !== BROWSER_ZONE ? ` and your zone (${BROWSER_ZONE})` : ""}, computed by the scheduler.</p>
  </section>`;
}

function requestBody(form, payload, editing) {
  const body = editing ? {} : { name: form.name.trim(), taskType: form.taskType.trim() };
  Object.assign(body, { timezone: form.timezone.trim(), queue: form.queue.trim(), payload });
  if (form.kind === "cron") body.cron = form.cron.trim();
  else if (form.kind === "interval") body.intervalSeconds = Number(form.intervalSeconds);
  else if (!editing) body.manual = true;
  return body;
}

// `schedule`: the one edited (absent: a new one). `onDone(saved)` after a save.
export function ScheduleForm({ schedule, onDone, cancelHref }) {
  const editing = Boolean(schedule);
  const [form, setForm] = useState(() => initial(schedule));
  const [saveError, setSaveError] = useState(null);
  const [payloadError, setPayloadError] = useState(null);
  const [busy, setBusy] = useState(false);
  const preview = usePreview(form);
  const set = (key) => (event) => setForm((old) => ({ ...old, [key]: event.target.value }));
  const timingError = preview.error;
  const submit = async (event) => {
    event.preventDefault();
    setSaveError(null);
    let payload;
    try {
      payload = JSON.parse(form.payload || "{}");
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new Error("not an object");
      setPayloadError(null);
    } catch (_) {
      setPayloadError("the payload must be a JSON object, such as {\"symbol\": \"BTCUSDT\"}");
      return;
    }
    setBusy(true);
    try {
      const path = editing ? `schedules/${encodeURIComponent(schedule.name)}` : "schedules";
      const saved = await api(path, { method: editing ? "PATCH" : "POST", body: requestBody(form, payload, editing) });
      onDone(saved);
    } catch (failure) {
      setSaveError(failure);
    } finally {
      setBusy(false);
    }
  };
  const invalid = (field) => (timingError && timingError.field === field ? "true" : undefined);
  const kinds = editing && schedule.kind !== "manual" ? ["cron", "interval"] : ["cron", "interval", "manual"];
  return html`<form class="schedule-form panel" onSubmit=${submit} aria-labelledby="form-heading">
    <h2 id="form-heading">${editing ? `Edit ${schedule.name}` : "New schedule"}</h2>
    <div class="form-grid">
      <div class="stack fields">
        <label>Name
          <input name="name" value=${form.name} onInput=${set("name")} required maxlength="200"
            disabled=${editing} pattern="[A-Za-z0-9_.:\\- ]{1,200}" placeholder="collect-btc" />
        </label>
        <label>Task type
          <input name="taskType" value=${form.taskType} onInput=${set("taskType")} required maxlength="200"
            disabled=${editing} placeholder="marketdata.collect" />
        </label>
        <fieldset class="kinds">
          <legend>Fires</legend>
          ${kinds.map(
            (kind) => html`<label class="inline"><input type="radio" name="kind" value=${kind}
              checked=${form.kind === kind} onChange=${set("kind")} /> ${kind === "cron" ? "on a cron expression" : kind === "interval" ? "every N seconds" : "only when triggered"}</label>`,
          )}
        </fieldset>
        ${form.kind === "cron"
          ? html`<label>Cron expression
              <input name="cron" class="mono" value=${form.cron} onInput=${set("cron")} required maxlength="200"
                placeholder="*/15 * * * *" autocomplete="off" spellcheck=${false}
                aria-invalid=${invalid("cron")} aria-describedby="timing-error cron-help" />
              <span class="label" id="cron-help">minute hour day-of-month month day-of-week, or @hourly, @daily…</span>
            </label>`
          : null}
        ${form.kind === "interval"
          ? html`<label>Interval seconds
              <input name="intervalSeconds" type="number" min="0.001" step="any" value=${form.intervalSeconds}
                onInput=${set("intervalSeconds")} required aria-invalid=${invalid("interval")} aria-describedby="timing-error" />
            </label>`
          : null}
        <label>Time zone
          <input name="timezone" value=${form.timezone} onInput=${set("timezone")} required list="tb-zones"
            maxlength="100" autocomplete="off" aria-invalid=${invalid("timezone")} aria-describedby="timing-error" />
          <datalist id="tb-zones">${ZONES.map((zone) => html`<option value=${zone} />`)}</datalist>
        </label>
        <label>Queue <input name="queue" value=${form.queue} onInput=${set("queue")} required maxlength="64" /></label>
        <label>Payload (JSON object)
          <textarea name="payload" class="mono" rows="4" value=${form.payload} onInput=${set("payload")}
            aria-invalid=${payloadError ? "true" : undefined} aria-describedby="payload-error"></textarea>
          <span class="field-error" id="payload-error">${payloadError || ""}</span>
        </label>
      </div>
      <${Preview} state=${preview} timezone=${form.timezone.trim() || "UTC"} />
    </div>
    <${ErrorNote} error=${saveError} />
    <div class="actions">
      <button class="primary" type="submit" disabled=${busy || Boolean(timingError)}>${editing ? "Save changes" : "Create schedule"}</button>
      <a href=${cancelHref}>Cancel</a>
    </div>
  </form>`;
}
