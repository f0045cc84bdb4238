// fabray's zone board: reads the public JSON routes every few seconds and redraws three tables.
// No build step, no library. Values from the server are written with textContent only (never
// innerHTML), and the page never holds a token: every route it reads is public.
"use strict";

const REFRESH_MS = 5000;
const ALERTS_SHOWN = 20;

async function getJson(path) {
  // relative URLs: the board works under any route prefix
  const response = await fetch(path, {headers: {"Accept": "application/json"}, cache: "no-store"});
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    const message = body && body.message ? body.message : response.statusText;
    throw new Error(`${path}: ${response.status} ${message}`);
  }
  return body;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function fmt(value, digits) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

// "low" below half the threshold, "mid" from half of it, "high" at or over it (the alarm)
function riskLevel(latest, threshold) {
  if (!latest || typeof latest.probability !== "number") return "none";
  if (latest.decision || (threshold !== null && latest.probability >= threshold)) return "high";
  if (threshold !== null && latest.probability >= threshold / 2) return "mid";
  return "low";
}

function riskBar(probability, threshold, scale) {
  const bar = el("div", null, {"class": "bar"});
  const fill = el("div", null, {"class": "fill"});
  fill.style.width = `${Math.max(0, Math.min(100, 100 * probability / scale))}%`;
  bar.appendChild(fill);
  if (threshold !== null) {
    const mark = el("div", null, {"class": "mark", "title": `threshold ${fmt(threshold, 2)}`});
    mark.style.left = `${Math.max(0, Math.min(100, 100 * threshold / scale))}%`;
    bar.appendChild(mark);
  }
  return bar;
}

function replaceRows(table, rows, emptyText, columns) {
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const row = el("tr", null, {"class": "empty"});
    row.appendChild(el("td", emptyText, {"colspan": columns}));
    body.appendChild(row);
  }
}

function drawZones(models, feed, alerts) {
  const serving = (models && models.serving) || {};
  const threshold = typeof serving.threshold === "number" ? serving.threshold : null;
  const scale = serving.task === "event" || threshold === null ? 1 : 2 * threshold;
  const fed = (feed && feed.zones) || {};
  const monitor = (feed && feed.monitor) || {};
  const names = Array.from(new Set([...(serving.zones || []), ...Object.keys(fed)])).sort();
  const open = {};
  for (const alert of (alerts && alerts.alerts) || []) {
    if (alert.status === "open" && !(alert.zone in open)) open[alert.zone] = alert;
  }
  const rows = names.map((zone) => {
    const latest = (fed[zone] || {}).latest || null;
    const level = riskLevel(latest, threshold);
    const probability = latest ? latest.probability : null;
    const row = el("tr", null, {"class": `risk-${level}`, "data-zone": zone, "data-risk": level,
                                "data-probability": probability === null ? "" : fmt(probability, 4)});
    row.appendChild(el("td", zone, {"class": "zone"}));
    row.appendChild(el("td", latest ? latest.timestamp : ((fed[zone] || {}).last_minute || "warming up")));
    const barCell = el("td");
    if (probability !== null) barCell.appendChild(riskBar(probability, threshold, scale));
    row.appendChild(barCell);
    row.appendChild(el("td", fmt(probability, 3), {"class": "num probability"}));
    row.appendChild(el("td", fmt(threshold, 3), {"class": "num"}));
    const alarm = !latest ? "–" : (latest.decision ? "ON" : "off") + (latest.degraded ? " (degraded)" : "");
    row.appendChild(el("td", alarm, {"class": "alarm"}));
    const alert = open[zone];
    row.appendChild(el("td", alert ? `#${alert.number} since ${alert.opened_at}` : ""));
    const watch = monitor.zones && monitor.zones[zone] ? monitor.zones[zone] : {};  // rolling, from outcomes
    row.appendChild(el("td", fmt(watch.precision, 2), {"class": "num"}));
    row.appendChild(el("td", fmt(watch.recall, 2), {"class": "num"}));
    const lead = watch.median_lead_min;
    row.appendChild(el("td", typeof lead === "number" ? `${lead > 0 ? "+" : ""}${lead} min` : "–", {"class": "num"}));
    return row;
  });
  replaceRows(document.getElementById("zones"), rows, "no zones yet: no model is live", 10);
  drawHealth(monitor);
  document.getElementById("version").textContent = serving.version
    ? `(model ${serving.version}, ${serving.task || "?"} task)` : "";
}

// the feed monitor (GET /v1/feed's `monitor`): input drift against training, retrain advised
function drawHealth(monitor) {
  const node = document.getElementById("health");
  if (!monitor || !monitor.drift) { node.textContent = ""; return; }
  const drift = monitor.drift;
  const driftText = drift.ready && typeof drift.max_score === "number"
    ? `input drift ${fmt(drift.max_score, 2)} (${drift.max_feature}; threshold ${fmt(drift.threshold, 2)})`
    : `input drift: ${drift.reason || "not measured yet"}`;
  const span = monitor.window_min ? `precision and recall over the last ${monitor.window_min} min; ` : "";
  node.className = monitor.retrain_advised ? "error" : "muted";
  node.textContent = `${span}${driftText}; retrain advised: ` +
    (monitor.retrain_advised ? `YES (${(monitor.retrain_reasons || []).join("; ")})` : "no");
}

function drawAlerts(alerts) {
  const list = ((alerts && alerts.alerts) || []).slice(0, ALERTS_SHOWN);
  const rows = list.map((alert) => {
    const row = el("tr", null, {"class": `alert-${alert.status}`, "data-alert": alert.alert_id});
    row.appendChild(el("td", alert.zone, {"class": "zone"}));
    row.appendChild(el("td", alert.opened_at));
    row.appendChild(el("td", fmt(alert.probability, 3), {"class": "num"}));
    row.appendChild(el("td", alert.status));
    row.appendChild(el("td", alert.outcome || ""));
    const lead = typeof alert.lead_min === "number" ? (alert.lead_min > 0 ? "+" : "") + alert.lead_min : "";
    row.appendChild(el("td", lead, {"class": "num lead"}));
    row.appendChild(el("td", alert.suggestion ? alert.suggestion.action : "", {"title":
      alert.suggestion ? alert.suggestion.basis : ""}));
    return row;
  });
  replaceRows(document.getElementById("alerts"), rows, "no alerts raised", 7);
  const s = (alerts && alerts.summary) || {};
  document.getElementById("alert-summary").textContent = alerts
    ? `(${s.open || 0} open, ${s.closed || 0} closed, median lead ` +
      `${s.median_lead_min === null || s.median_lead_min === undefined ? "–" : s.median_lead_min + " min"})` : "";
}

function drawWeights(weights) {
  const current = (weights && weights.current) || {};
  const zones = Object.keys(current).sort();
  const models = Array.from(new Set(zones.flatMap((z) => Object.keys(current[z] || {})))).sort();
  const head = document.querySelector("#weights thead tr");
  head.replaceChildren(el("th", "zone"), ...models.map((m) => el("th", m, {"class": "num"})));
  const rows = zones.map((zone) => {
    const row = el("tr", null, {"data-zone": zone});
    row.appendChild(el("td", zone, {"class": "zone"}));
    const values = current[zone] || {};
    const top = Math.max(...models.map((m) => values[m] || 0));
    for (const model of models) {
      const w = values[model];
      row.appendChild(el("td", fmt(w, 2), {"class": w === top && w > 0 ? "num top" : "num"}));
    }
    return row;
  });
  replaceRows(document.getElementById("weights"), rows, "no weights yet", models.length + 1);
}

async function refresh() {
  const names = ["models", "feed", "alerts", "weights"];
  const results = await Promise.allSettled([
    getJson("v1/models"), getJson("v1/feed"), getJson(`v1/alerts?limit=${ALERTS_SHOWN}`),
    getJson("v1/weights?limit=1"),
  ]);
  const [models, feed, alerts, weights] = results.map((r) => (r.status === "fulfilled" ? r.value : null));
  drawZones(models, feed, alerts);
  drawAlerts(alerts);
  drawWeights(weights);
  const failed = results.map((r, i) => (r.status === "rejected" ? `${names[i]}: ${r.reason.message}` : null))
    .filter(Boolean);
  const status = document.getElementById("status");
  const counts = (feed && feed.counts) || {};
  const when = new Date().toLocaleTimeString();
  status.className = failed.length ? "error" : "muted";
  status.textContent = failed.length
    ? `updated ${when}; could not read ${failed.join("; ")}`
    : `updated ${when} · outcomes applied ${counts.outcomes_applied || 0} · refreshes every ${REFRESH_MS / 1000} s`;
}

async function loop() {
  try { await refresh(); } catch (err) { console.error(err); }
  setTimeout(loop, REFRESH_MS);
}

loop();
