// The driver pages' own bits: the browser's time zone for the server (usage days, reservation
// times), "use my location", a confirmation before reporting a card lost, the usage chart.

// -- time zone: a cookie the server reads (an IANA name, e.g. Europe/Berlin) ---------------------
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && /^[A-Za-z0-9_+\/-]{1,64}$/.test(zone) && !document.cookie.split("; ").includes(`polaris_tz=${zone}`)) {
    document.cookie = `polaris_tz=${zone}; path=/console; max-age=31536000; samesite=lax`;
  }
} catch (e) { /* no Intl: the server uses UTC */ }

// -- use my location ---------------------------------------------------------------------------
for (const button of document.querySelectorAll("[data-locate]")) {
  const form = button.closest("form");
  const status = form.querySelector("[data-locate-status]");
  button.addEventListener("click", () => {
    if (!navigator.geolocation) { status.textContent = "This browser cannot tell its location."; return; }
    status.textContent = "Locating…";
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        form.elements.lat.value = pos.coords.latitude.toFixed(5);
        form.elements.lon.value = pos.coords.longitude.toFixed(5);
        status.textContent = "";
        form.requestSubmit();
      },
      (err) => { status.textContent = `No location: ${err.message}`; },
      { timeout: 15000 },
    );
  });
}

// -- confirmations -----------------------------------------------------------------------------
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// -- usage per day (uPlot bars) ----------------------------------------------------------------
function drawUsage(el) {
  const points = JSON.parse(el.dataset.points || "[]");
  if (!points.length || !window.uPlot) return;
  const t = points.map((p) => Date.parse(`${p.date}T12:00:00Z`) / 1000);
  const kwh = points.map((p) => p.kwh);
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue("--fg").trim() || "#16181d";
  const line = css.getPropertyValue("--line").trim() || "#d5d9e0";
  const accent = css.getPropertyValue("--accent").trim() || "#1656b8";
  const axis = { stroke: fg, grid: { stroke: line }, ticks: { stroke: line } };
  const opts = {
    width: Math.max(260, el.clientWidth || 600),
    height: 200,
    legend: { show: false },
    scales: { x: { time: true } },
    series: [{}, {
      label: "kWh", stroke: accent, fill: accent, width: 1,
      paths: window.uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false },
    }],
    axes: [{ ...axis }, { ...axis, label: "kWh" }],
  };
  if (el._plot) el._plot.destroy();
  el.replaceChildren();
  el._plot = new window.uPlot(opts, [t, kwh], el);
}
function initUsage() {
  for (const el of document.querySelectorAll("[data-usage-chart]")) drawUsage(el);
}
if (document.readyState === "complete") initUsage();
else window.addEventListener("load", initUsage);

// -- catching up when the stream (re)opens ------------------------------------------------------
// What changed between rendering the page and the stream opening (a stop answered while the
// page reloaded, the bill that followed) is not replayed on a fresh stream: when console.js marks
// the stream live, every live part of the page is fetched once more.
let wasLive = false;
new MutationObserver(() => {
  const live = document.documentElement.dataset.live === "live";
  if (live && !wasLive) {
    for (const el of document.querySelectorAll("[data-live-types]")) {
      if (window.htmx && el.getAttribute("hx-get")) window.htmx.trigger(el, "live");
      el.dispatchEvent(new CustomEvent("polaris:live", { bubbles: false }));
    }
  }
  wasLive = live;
}).observe(document.documentElement, { attributes: true, attributeFilter: ["data-live"] });
