// The console's little JavaScript: theme toggle, CSRF header, one live stream per page that
// asks htmx to refresh the fragments an event concerns, and meter curves (uPlot).
import { fetchEventSource } from "/console/assets/vendor/fetch-event-source/index";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

// -- theme -------------------------------------------------------------------------------------
function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function showTheme(button) {
  const dark = currentTheme() === "dark";
  button.setAttribute("aria-pressed", String(dark));
  button.textContent = dark ? "Light theme" : "Dark theme";
}
for (const button of document.querySelectorAll("[data-theme-toggle]")) {
  showTheme(button);
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("polaris-theme", next); } catch (e) { /* ignore */ }
    showTheme(button);
  });
}

// -- live data ---------------------------------------------------------------------------------
// <main data-stream="/api/v1/stream"> opens the stream; an element with
// data-live-types="session.updated,session.started" (and optional data-live-charger /
// data-live-session filters) gets the htmx event "live" when a matching event arrives, so its
// hx-get (hx-trigger="live") fetches a fresh server-rendered fragment.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pending = new Map();

function setStatus(text) {
  for (const el of document.querySelectorAll("[data-live-status]")) el.textContent = text;
  document.documentElement.dataset.live = text;
}

function matches(el, event, data) {
  const types = (el.dataset.liveTypes || "").split(",").map((t) => t.trim()).filter(Boolean);
  if (event !== "reset" && types.length && !types.includes(event) && !types.includes("*")) return false;
  const payload = (data && data.payload) || {};
  if (el.dataset.liveCharger && data && data.charge_box_id !== el.dataset.liveCharger) return false;
  if (el.dataset.liveSession) {
    const ids = [payload.session_id, payload.workflow_id, payload.id].filter(Boolean).map(String);
    if (!ids.includes(el.dataset.liveSession)) return false;
  }
  return true;
}

function refresh(el) {
  // At most one refresh per element per 500 ms: a burst of events is one request.
  if (pending.has(el)) return;
  pending.set(el, setTimeout(() => {
    pending.delete(el);
    if (window.htmx && el.isConnected) window.htmx.trigger(el, "live");
    el.dispatchEvent(new CustomEvent("polaris:live", { bubbles: false }));
  }, 500));
}

function handle(message) {
  let data = null;
  try { data = message.data ? JSON.parse(message.data) : null; } catch (e) { data = null; }
  const event = message.event || "message";
  document.dispatchEvent(new CustomEvent("polaris:event", { detail: { event, data } }));
  for (const el of document.querySelectorAll("[data-live-types]")) {
    if (matches(el, event, data)) refresh(el);
  }
}

async function streamToken() {
  const answer = await fetch("/console/token", {
    method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
  });
  if (answer.status === 401 || answer.redirected || answer.status === 204) return null;
  if (!answer.ok) throw new Error(`token: ${answer.status}`);
  return (await answer.json()).token;
}

async function live(url) {
  let lastId = null;
  for (;;) {
    let token;
    try { token = await streamToken(); } catch (e) { token = undefined; }
    if (token === null) { setStatus("signed out"); return; }
    if (token) {
      const headers = { Authorization: `Bearer ${token}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      try {
        await fetchEventSource(url, {
          headers,
          openWhenHidden: true,
          async onopen(response) {
            if (!response.ok) throw new Error(`stream: ${response.status}`);
            setStatus("live");
            // What changed between the page's render (or the last stream) and now came with no
            // event we could see: refresh every live fragment once.
            for (const el of document.querySelectorAll("[data-live-types]")) refresh(el);
          },
          onmessage(message) {
            if (message.id) lastId = message.id;
            handle(message);
          },
          onerror(error) { throw error; }, // our loop reconnects, with a fresh token
        });
      } catch (e) { /* fall through: reconnect */ }
    }
    // The stream ended (token expiry, restart, network): reconnect after a pause.
    setStatus("reconnecting");
    await sleep(2000);
  }
}

const streamUrl = document.querySelector("[data-stream]")?.dataset.stream;
if (streamUrl) live(streamUrl);

// -- meter curves ------------------------------------------------------------------------------
// <div data-meter-chart data-src="…/meter.json" data-live-types="session.updated"
//  data-live-session="…">: points {t: epoch seconds, kwh, kw} drawn with uPlot.
async function drawMeter(el) {
  const answer = await fetch(el.dataset.src, { credentials: "same-origin" });
  if (!answer.ok) return;
  const points = await answer.json();
  const t = points.map((p) => p.t);
  const kwh = points.map((p) => p.kwh);
  const kw = points.map((p) => p.kw);
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    width, height: 260,
    series: [{}, { label: "Energy (kWh)", stroke: "#2b7de9", width: 2 },
      { label: "Power (kW)", stroke: "#d9480f", width: 1, scale: "kw" }],
    axes: [{}, { label: "kWh" }, { side: 1, scale: "kw", label: "kW", grid: { show: false } }],
  };
  if (el._plot) el._plot.destroy();
  el.replaceChildren();
  el._plot = new window.uPlot(opts, [t, kwh, kw], el);
  el.dataset.points = String(points.length);
  const last = points.length ? points[points.length - 1].kwh : null;
  el.dataset.lastKwh = last === null ? "" : String(last);
}
function initCharts(root) {
  for (const el of root.querySelectorAll("[data-meter-chart]")) {
    if (el._meterInit) continue;
    el._meterInit = true;
    el.addEventListener("polaris:live", () => drawMeter(el));
    drawMeter(el);
  }
}
window.addEventListener("load", () => initCharts(document));
document.addEventListener("htmx:afterSettle", (e) => initCharts(e.target));
