// Live updates over server-sent events and small inline SVG line charts. No dependencies.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

function pick(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function drawChart(svg, data) {
  const lines = (svg.dataset.lines || "").split(",").filter(Boolean);
  const width = svg.clientWidth || 600, height = svg.clientHeight || 180, pad = 22;
  const series = lines.map((name) => ({ name, values: (data && data[name]) || [] }));
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const axis = document.createElementNS(SVGNS, "path");
  axis.setAttribute("class", "axis");
  axis.setAttribute("d", `M${pad},${pad / 2}V${height - pad}H${width - 4}`);
  svg.appendChild(axis);
  const labels = [[2, pad / 2 + 8, String(max), "start"],
    [pad, height - 6, svg.dataset.from || "", "start"],
    [width - 4, height - 6, svg.dataset.to || "", "end"]];
  for (const [x, y, text, anchor] of labels) {
    const label = document.createElementNS(SVGNS, "text");
    label.setAttribute("x", x); label.setAttribute("y", y);
    label.setAttribute("text-anchor", anchor);
    label.textContent = text;
    svg.appendChild(label);
  }
  for (const s of series) {
    const line = document.createElementNS(SVGNS, "polyline");
    const pts = s.values.map((v, i) => {
      const x = pad + (i * (width - pad - 4)) / (n - 1);
      const y = height - pad - (v / max) * (height - pad * 1.5);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("stroke", `var(--c-${s.name})`);
    line.dataset.series = s.name;
    line.dataset.last = String(s.values.length ? s.values[s.values.length - 1] : 0);
    svg.appendChild(line);
  }
}

function formatMap(map) {
  const parts = Object.entries(map || {}).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(" · ") : "—";
}

function ago(ms) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  return `${Math.floor(seconds / 3600)}h ago`;
}

function link(href, text, code) {
  const a = document.createElement("a");
  a.href = href;
  if (code) {
    const c = document.createElement("code");
    c.textContent = text;
    a.appendChild(c);
  } else {
    a.textContent = text;
  }
  return a;
}

// Cells are built with textContent only: tenant names and reasons come from outside.
function cell(row, spec) {
  const [field, kind] = spec.split(":");
  const value = row[field];
  const td = document.createElement("td");
  if (kind === "strong") {
    const b = document.createElement("strong");
    b.textContent = String(value ?? "");
    td.appendChild(b);
  } else if (kind === "job") {
    td.appendChild(link(`/dashboard/jobs/${encodeURIComponent(value)}`, `${String(value).slice(0, 16)}…`, true));
  } else if (kind === "state") {
    const span = document.createElement("span");
    span.className = `state state-${value}`;
    span.textContent = String(value || "unknown");
    td.appendChild(span);
  } else if (kind === "ago") {
    td.dataset.ago = String(value ?? "");
    td.textContent = ago(value);
  } else if (kind === "links") {
    const status = row.dead ? "dead" : "failed";
    td.appendChild(link(`/dashboard/jobs?tenant=${encodeURIComponent(value)}&status=${status}`, "events"));
    if (row.dead) {
      td.appendChild(document.createTextNode(" · "));
      td.appendChild(link("/dashboard/dead", "retry…"));
    }
  } else {
    if (kind === "why") td.className = "why";
    td.textContent = String(value ?? "");
  }
  return td;
}

// What each live table shows, serialised: rows that did not change leave its DOM alone, so an
// operator's text selection or keyboard focus in it survives the pushes.
const rendered = new WeakMap();

function setText(el, text) {
  if (el.textContent === text) return;
  if (el.childNodes.length === 1 && el.firstChild.nodeType === Node.TEXT_NODE) el.firstChild.data = text;
  else el.textContent = text;
}

function renderTable(tbody, rows) {
  const key = JSON.stringify(rows);
  if (rendered.get(tbody) === key) {
    // Same rows: only the relative times move on, in their own text nodes.
    tbody.querySelectorAll("td[data-ago]").forEach((td) => setText(td, ago(td.dataset.ago)));
    return;
  }
  rendered.set(tbody, key);
  const specs = tbody.dataset.cols.split(",");
  const fresh = rows.map((row) => {
    const tr = document.createElement("tr");
    specs.forEach((spec) => tr.appendChild(cell(row, spec)));
    return tr;
  });
  if (!fresh.length && tbody.dataset.empty) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = specs.length;
    td.className = "muted";
    td.textContent = tbody.dataset.empty;
    tr.appendChild(td);
    fresh.push(tr);
  }
  tbody.replaceChildren(...fresh);
}

function apply(data) {
  document.querySelectorAll("tbody[data-live-table]").forEach((tbody) => {
    const rows = pick(data, tbody.dataset.liveTable);
    if (Array.isArray(rows)) renderTable(tbody, rows);
  });
  document.querySelectorAll("[data-live-show]").forEach((el) => {
    const rows = pick(data, el.dataset.liveShow);
    if (Array.isArray(rows)) el.hidden = rows.length === 0;
  });
  document.querySelectorAll("[data-live]").forEach((el) => {
    const v = pick(data, el.dataset.live);
    if (v !== undefined && v !== null && String(v) !== el.textContent) el.textContent = String(v);
    const tile = el.closest("[data-bad-when]");
    if (tile && v !== undefined && v !== null) {
      const bad = tile.dataset.badWhen === "zero" ? Number(v) === 0 : Number(v) > 0;
      tile.classList.toggle("bad", bad);
    }
  });
  document.querySelectorAll("[data-live-map]").forEach((el) => {
    setText(el, formatMap(pick(data, el.dataset.liveMap)));
  });
  document.querySelectorAll("svg[data-chart]").forEach((svg) => {
    const v = pick(data, svg.dataset.chart);
    if (v) drawChart(svg, v);
  });
}

// What the stream keeps up to date (the Budget page's burn chart is drawn once, from the page).
const LIVE = "[data-live], [data-live-map], tbody[data-live-table], svg[data-chart]:not([data-initial])";

function clock(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

// The live state, shown by the dot (its class and title), the banner and the figures: while
// they are not being updated they are marked stale and the banner says since when.
function showLive(state, message, action) {
  const status = document.querySelector("[data-live-status]");
  const banner = document.querySelector("[data-live-banner]");
  const on = state === "on";
  document.body.dataset.liveState = state;
  status.className = `live ${on ? "on" : "off"}`;
  status.title = on ? "live" : message;
  document.querySelectorAll(LIVE).forEach((el) => el.classList.toggle("stale", !on));
  if (!banner) return;
  banner.hidden = on;
  banner.replaceChildren();
  if (on) return;
  banner.append(message);
  if (action) banner.append(" ", action);
}

function connect() {
  const status = document.querySelector("[data-live-status]");
  if (!status || !window.EventSource) return;
  let freshAt = Date.now(); // the figures shown are those of the page, then of the last push
  const asOf = () => `figures as of ${clock(freshAt)}`;
  const source = new EventSource("/dashboard/live");
  // Closed for good (signed out, here or in another tab): no more pushes, sign in again.
  const closed = (why) => {
    source.close();
    const next = encodeURIComponent(location.pathname + location.search);
    showLive("closed", `${why}: live updates stopped — ${asOf()}.`,
      link(`/dashboard/signin?next=${next}`, "Sign in again"));
  };
  source.addEventListener("error", (e) => {
    if (e.data) { // the server's own error event (a lost connection carries no data)
      let why = "";
      try { why = JSON.parse(e.data).error; } catch (_) { why = ""; }
      if (why === "signed out") closed("Signed out");
      else showLive("stale", `Redis unavailable — ${asOf()}.`);
    } else if (source.readyState === EventSource.CLOSED) {
      closed("Not signed in"); // the stream was refused (401): it is not retried
    } else {
      showLive("stale", `Connection to the server lost, reconnecting — ${asOf()}.`);
    }
  });
  source.addEventListener("overview", (e) => {
    apply(JSON.parse(e.data));
    freshAt = Date.now();
    showLive("on");
    document.body.dataset.liveAt = String(freshAt);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const initial = document.getElementById("live-initial");
  if (initial) apply(JSON.parse(initial.textContent));
  document.querySelectorAll("svg[data-initial]").forEach((svg) => {
    drawChart(svg, JSON.parse(svg.dataset.initial));
  });
  const all = document.querySelector("[data-select-all]");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('input[type="checkbox"][name="id"]').forEach((c) => { c.checked = all.checked; });
    });
  }
  connect();
});
