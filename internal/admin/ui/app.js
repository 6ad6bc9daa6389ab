// app.js: the mqlb dashboard. It polls the admin JSON API every 2 s; rates
// and charts come from the per-second history the process keeps
// (GET /api/v1/history). Actions ask for confirmation in a dialog and are
// shown only where they apply.
"use strict";
const $ = (id) => document.getElementById(id);
const WINDOW_MS = 5 * 60 * 1000; // what the charts show
const POLL_MS = 2000;

let samples = []; // history samples, oldest first
let serverHist = {}; // "upstream/server" -> {max_active, state, state_since, changed}
let lastCluster = 0;
let haveNodes = false; // the brokers are mqlb nodes (mqlb up): their sessions are searchable

// The token lives in sessionStorage: it survives a reload of the page but not
// the browser session, and is never sent anywhere but this admin API.
$("token").value = sessionStorage.getItem("mqlb-token") || "";
$("token").onchange = () => { sessionStorage.setItem("mqlb-token", $("token").value); actionError = ""; refresh(); };
$("q").oninput = () => Promise.all([refreshConns(), refreshNodeClients()]).catch(showError);

async function api(path, method, body) {
  const opts = { method: method || "GET", headers: {} };
  const t = $("token").value;
  if (t) opts.headers.Authorization = "Bearer " + t;
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) throw new Error(`${method || "GET"} ${path}: ${r.status} ${data && data.error ? data.error : text.trim()}`);
  return data;
}

// A failed poll's error shows until a poll succeeds; a failed action's
// (actionError) stays through the polls until the next action, so the
// operator can read why it was refused.
let actionError = "";
function showError(e) { $("err").textContent = [actionError, e.message || String(e)].filter(Boolean).join(" — "); }
function showActionError(e) { actionError = e.message || String(e); $("err").textContent = actionError; }

// confirmThen asks in the page's dialog, then runs fn and refreshes.
function confirmThen(text, fn) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  d.returnValue = "";
  d.onclose = async () => {
    if (d.returnValue !== "ok") return;
    actionError = "";
    try { await fn(); $("err").textContent = ""; } catch (e) { showActionError(e); }
    refresh();
  };
  d.showModal();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    if (k === "onclick" || k === "onchange") e[k] = attrs[k]; else e.setAttribute(k, attrs[k]);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}
function td(text, cls) { return el("td", cls ? { class: cls } : {}, text); }
function num(v) { return td(fmtNum(v), "num"); }

function fmtNum(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0);
}
function fmtBytes(v) {
  for (const [u, d] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) if (v >= d) return (v / d).toFixed(1) + " " + u;
  return Math.round(v) + " B";
}
function fmtDur(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + Math.floor(s / 3600) % 24 + "h";
}

// rate returns per-second rates between the last two samples.
function rates() {
  const out = { servers: {}, accepted: 0, refused: 0 };
  if (samples.length < 2) return out;
  const a = samples[samples.length - 2], b = samples[samples.length - 1];
  const dt = (b.t - a.t) / 1000;
  for (const k in b.servers) {
    const x = a.servers[k], y = b.servers[k];
    if (!x) continue;
    out.servers[k] = { connects: (y.total - x.total) / dt, in: (y.bytes_in - x.bytes_in) / dt, out: (y.bytes_out - x.bytes_out) / dt };
  }
  for (const l in b.accepted) out.accepted += (b.accepted[l] - (a.accepted[l] || 0)) / dt;
  for (const l in b.refused) out.refused += (b.refused[l] - (a.refused[l] || 0)) / dt;
  return out;
}

async function refreshHistory() {
  const since = samples.length ? samples[samples.length - 1].t : 0;
  const h = await api("/api/v1/history?since=" + since);
  samples = samples.concat(h.samples);
  const cut = Date.now() - WINDOW_MS;
  samples = samples.filter((s) => s.t >= cut);
  serverHist = h.servers || {};
}

function renderSummary(r) {
  const last = samples[samples.length - 1];
  let bytes = 0;
  for (const k in r.servers) bytes += r.servers[k].in + r.servers[k].out;
  const item = (label, value, id) => el("span", { id }, label + " ", el("b", {}, value));
  $("summary").replaceChildren(
    item("clients", last ? fmtNum(last.clients) : "-", "sum-clients"),
    item("connects/s", fmtNum(r.accepted), "sum-connects"),
    item("refusals/s", fmtNum(r.refused), "sum-refusals"),
    item("traffic", fmtBytes(bytes) + "/s", "sum-bytes"));
}

function renderCharts() {
  // The window grows with the history, up to WINDOW_MS.
  const t1 = Date.now(), t0 = samples.length ? Math.min(samples[0].t, t1 - 10000) : t1 - WINDOW_MS;
  const perKey = (get) => {
    const keys = new Set();
    for (const s of samples) for (const k in get(s)) keys.add(k);
    return [...keys].sort();
  };
  const series = (keys, value) => keys.map((k) => ({ name: k, points: value(k) }));
  const deltas = (k, get) => {
    const pts = [];
    for (let i = 1; i < samples.length; i++) {
      const a = get(samples[i - 1], k), b = get(samples[i], k);
      if (a === undefined || b === undefined) continue;
      pts.push([samples[i].t, Math.max(0, (b - a) / ((samples[i].t - samples[i - 1].t) / 1000))]);
    }
    return pts;
  };
  const servers = perKey((s) => s.servers);
  const listeners = perKey((s) => s.refused);
  drawChart($("chart-active"), series(servers, (k) => samples.filter((s) => s.servers[k]).map((s) => [s.t, s.servers[k].active])), t0, t1, fmtNum);
  drawChart($("chart-connects"), series(servers, (k) => deltas(k, (s, k) => s.servers[k] && s.servers[k].total)), t0, t1, fmtNum);
  drawChart($("chart-bytes"), series(servers, (k) => deltas(k, (s, k) => s.servers[k] && s.servers[k].bytes_in + s.servers[k].bytes_out)), t0, t1, fmtBytes);
  drawChart($("chart-refusals"), series(listeners, (k) => deltas(k, (s, k) => s.refused[k])), t0, t1, fmtNum);
  $("window").textContent = samples.length ? `(${fmtDur(t1 - samples[0].t)} of history, one sample a second)` : "";
}

// actionsFor lists the state changes that apply to a server in a state.
function actionsFor(state) {
  return { up: ["drain", "disable"], down: ["drain", "disable"], drain: ["enable", "disable"], disabled: ["enable", "drain"] }[state] || [];
}

function serverPath(u, s) { return `/api/v1/upstreams/${encodeURIComponent(u)}/servers/${encodeURIComponent(s)}`; }

function checkCell(u, s) {
  const h = s.health;
  if (u.health_check === "none" || !h.last_check) {
    if (s.state === "down") return td(`down after failed connects (${s.connect_failures} failed or refused connects)`, "fail");
    return td(u.health_check === "none" ? "no checks" : "pending", "muted");
  }
  if (h.last_error) return td(`✗ ${h.consecutive_failures}× failed: ${h.last_error}`, "fail");
  return td(`✓ ok in ${h.last_duration_ms.toFixed(1)} ms`);
}

function renderUpstreams(list, r) {
  const root = $("upstreams");
  root.replaceChildren();
  for (const u of list) {
    root.append(el("h3", {}, u.name, " ", el("small", {}, `balance ${u.balance}, health ${u.health_check}, proxy_protocol ${u.proxy_protocol}, retries ${u.connect_retries}`)));
    const head = ["server", "address", "state", "weight", "cur", "max", "total", "new/s", "in/s", "out/s", "failed/refused", "last check", "in state", "last change", ""];
    const tb = el("tbody");
    for (const s of u.servers) {
      const key = u.name + "/" + s.name;
      const h = serverHist[key] || {};
      const rt = r.servers[key] || { connects: 0, in: 0, out: 0 };
      const tr = el("tr", { class: s.state, "data-server": key });
      const weight = el("input", { type: "number", min: 1, max: 256, value: s.weight, class: "weight", "aria-label": "weight of " + s.name });
      weight.onchange = () => {
        const w = Number(weight.value);
        confirmThen(`Set ${key}'s weight from ${s.weight} to ${w}?`, () => api(serverPath(u.name, s.name) + "/weight", "PUT", { weight: w }));
      };
      const acts = el("td");
      for (const a of actionsFor(s.state)) {
        acts.append(el("button", { "data-action": a, onclick: () => confirmThen(`${a[0].toUpperCase() + a.slice(1)} ${key}? ` +
          (a === "enable" ? "It takes new connections again." : "It takes no new connections; open ones stay."),
          () => api(serverPath(u.name, s.name) + "/" + a, "POST")) }, a));
      }
      if (u.servers.length > 1) {
        acts.append(el("button", { class: "danger", "data-action": "remove", onclick: () => confirmThen(`Remove ${key} (${s.address}) from ${u.name}? Its ${s.active} open connection(s) stay until they close.`,
          () => api(serverPath(u.name, s.name), "DELETE")) }, "remove"));
      }
      tr.append(td(s.name), td(s.address), td(s.state, "st " + s.state), el("td", {}, weight),
        num(s.active), num(Math.max(h.max_active || 0, s.active)), num(s.total), num(rt.connects),
        td(fmtBytes(rt.in) + "/s", "num"), td(fmtBytes(rt.out) + "/s", "num"), td(s.connect_failures, "num" + (s.connect_failures ? " fail" : "")),
        checkCell(u, s), td(h.state_since ? fmtDur(Date.now() - Date.parse(h.state_since)) : "-"),
        td(h.changed ? new Date(h.state_since).toLocaleTimeString() : "none seen", h.changed ? "" : "muted"), acts);
      tb.append(tr);
    }
    // Removed servers whose connections are still open: no actions but evacuate.
    for (const s of u.removed || []) {
      const key = u.name + "/" + s.name;
      const acts = el("td", {}, el("button", { "data-action": "evacuate", onclick: () => confirmThen(`Evacuate ${key} (removed)? Its ${s.active} open connection(s) are closed at 100/s; the clients reconnect to the other servers.`,
        () => api(serverPath(u.name, s.name) + "/evacuate", "POST")) }, "evacuate"));
      tb.append(el("tr", { class: "removed", "data-server": key, "data-removed": "true" }, td(s.name), td(s.address), td("removed", "st removed"), td("-"),
        num(s.active), td("-"), td("-"), td("-"), td("-"), td("-"), td("-"), td("open connections stay until they close", "muted"), td("-"), td("-"), acts));
    }
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...head.map((x, i) => el("th", i >= 4 && i <= 10 ? { class: "num" } : {}, x)))), tb);
    root.append(table, addForm(u));
  }
}

function addForm(u) {
  const name = el("input", { placeholder: "name" }), addr = el("input", { placeholder: "host:port" }), w = el("input", { type: "number", min: 1, max: 256, value: 1, class: "weight" });
  const add = el("button", { onclick: () => {
    if (!addr.value) { showActionError(new Error("add a server: the address is required")); return; }
    confirmThen(`Add server ${name.value || addr.value} (${addr.value}, weight ${w.value}) to ${u.name}?`,
      () => api(`/api/v1/upstreams/${encodeURIComponent(u.name)}/servers`, "POST", { name: name.value, address: addr.value, weight: Number(w.value) }));
  } }, "add server");
  return el("p", { class: "addform" }, name, addr, "weight ", w, " ", add);
}

function renderListeners(res) {
  const l = res.limits;
  $("limits").textContent = `limits: max_connections ${l.max_connections || "∞"} (open ${l.client_connections}), ` +
    `max_connections_per_ip ${l.max_connections_per_ip || "∞"}, max_pending ${l.max_pending || "∞"}, ` +
    `connect_rate_per_ip ${l.connect_rate_per_ip || "∞"}/s burst ${l.connect_burst_per_ip}, connect_timeout ${l.connect_timeout_ms} ms, max_connect_packet ${l.max_connect_packet} B, ` +
    `shutdown_grace ${l.shutdown_grace_ms} ms`;
  const tb = $("listeners");
  tb.replaceChildren();
  for (const x of res.listeners) {
    const kinds = [x.tls ? "TLS" : "TCP", x.websocket ? "WebSocket " + x.websocket : "", x.proxy_protocol ? "PROXY accepted" : ""].filter(Boolean).join(", ");
    const reasons = Object.entries(x.refused).sort((a, b) => b[1] - a[1]);
    const total = reasons.reduce((n, e) => n + e[1], 0);
    tb.append(el("tr", {}, td(x.name), td(x.address), td(x.upstream), td(kinds), num(x.accepted), td(fmtNum(total), "num" + (total ? " fail" : "")),
      td(reasons.map(([k, v]) => `${k} ${v}`).join(", ") || "none", reasons.length ? "" : "muted")));
  }
}

async function refreshConns() {
  const res = await api("/api/v1/connections?limit=200&q=" + encodeURIComponent($("q").value));
  $("conncount").textContent = `(${res.total}${res.total > res.connections.length ? ", first " + res.connections.length + " shown" : ""})`;
  const tb = $("conns");
  tb.replaceChildren();
  for (const c of res.connections) {
    const who = c.client_id === "" ? "the client(s) with an empty client id" : c.client_id;
    const kick = el("button", { class: "danger", onclick: () => confirmThen(`Kick ${who}? Its connection(s) through the load balancer are closed; the client may reconnect.`,
      () => api("/api/v1/connections?client_id=" + encodeURIComponent(c.client_id), "DELETE")) }, "kick");
    tb.append(el("tr", {}, c.client_id === "" ? td("(empty)", "muted") : td(c.client_id), td(c.username || ""), td(c.remote), td(c.upstream + "/" + c.server),
      td(fmtDur(Date.now() - Date.parse(c.since))), td(fmtBytes(c.bytes_in), "num"), td(fmtBytes(c.bytes_out), "num"), el("td", {}, kick)));
  }
}

async function refreshNodeClients() {
  $("node-clients-section").hidden = !haveNodes;
  if (!haveNodes) return;
  const res = await api("/api/v1/clients?limit=100&q=" + encodeURIComponent($("q").value));
  const tb = $("node-clients");
  const rows = [];
  let total = 0;
  for (const n of res.nodes) {
    if (n.error || !n.data) continue;
    total += n.data.total;
    for (const c of n.data.clients) {
      const kick = c.connected ? el("button", { class: "danger", onclick: () => confirmThen(`Disconnect ${c.client_id} from ${c.node}? MQTT 5 clients are told why (0x98 administrative action); a persistent session stays.`,
        () => api("/api/v1/clients/" + encodeURIComponent(c.client_id), "DELETE")) }, "kick") : "";
      rows.push(el("tr", { "data-client": c.client_id }, td(c.client_id), td(c.node), td(c.connected ? "yes" : "no (session held)", c.connected ? "" : "muted"),
        td(c.protocol), td(c.username || ""), td(c.remote), num(c.subscriptions), num(c.inflight), el("td", {}, kick)));
    }
  }
  tb.replaceChildren(...rows);
  $("node-clients-count").textContent = `(${total}${total > rows.length ? ", first " + rows.length + " shown" : ""})`;
}

async function refreshSticky(ups) {
  const sticky = ups.filter((u) => u.balance === "sticky");
  $("sticky-section").hidden = sticky.length === 0;
  const root = $("sticky");
  const parts = [];
  for (const u of sticky) {
    const t = await api("/api/v1/sticky/" + encodeURIComponent(u.name));
    const path = "/api/v1/sticky/" + encodeURIComponent(u.name);
    const clear = el("button", { class: "danger", onclick: () => confirmThen(`Clear all ${t.size} sticky entries of ${u.name}? Clients are placed afresh on their next connection.`, () => api(path, "DELETE")) }, "clear all");
    const tb = el("tbody");
    for (const e of t.entries.slice(0, 200)) {
      const forget = el("button", { onclick: () => confirmThen(`Forget ${e.key}'s sticky entry (${e.server})?`, () => api(path + "?key=" + encodeURIComponent(e.key), "DELETE")) }, "forget");
      tb.append(el("tr", {}, td(e.key), td(e.server), num(e.active), td(fmtDur(Date.now() - Date.parse(e.last_used)) + " ago"),
        td(e.expires ? "in " + fmtDur(Date.parse(e.expires) - Date.now()) : "while connected", "muted"), el("td", {}, forget)));
    }
    parts.push(el("h3", {}, u.name, " ", el("small", {}, `${t.size} entries `), clear),
      el("table", {}, el("thead", {}, el("tr", {}, ...["key", "server", "active", "last used", "expires", ""].map((x) => el("th", {}, x)))), tb));
  }
  root.replaceChildren(...parts);
}

async function refreshCluster() {
  const res = await api("/api/v1/cluster");
  haveNodes = res.nodes.length > 0;
  $("cluster-section").hidden = !haveNodes;
  const tb = $("cluster");
  tb.replaceChildren();
  for (const n of res.nodes) {
    const d = n.data;
    if (n.error || !d) {
      tb.append(el("tr", { class: "down" }, td(n.name), td("unreachable: " + n.error, "fail")));
      continue;
    }
    // buckets (retained, sessions, qos2) and the session queue stream, by kind
    const kind = (s) => (s.bucket || s.stream || "store").replace(/^mqlb_.*_/, "");
    const store = (d.store || []).map((s) => s.error ? `${kind(s)}: ${s.error}` :
      `${kind(s)}: R${s.replicas}, ${s.leader || "no leader"}, ${(s.peers || []).filter((p) => p.current).length}/${(s.peers || []).length} current`).join("; ");
    tb.append(el("tr", { class: d.healthy ? "" : "down", "data-node": d.node }, td(d.node), td(d.healthy ? "✓ ok" : "✗ " + d.problem, d.healthy ? "st up" : "fail"),
      td(d.members.map((m) => m.name).join(", ")), num(d.clients), td(`${d.sessions.online}/${d.sessions.offline}`, "num"), num(d.retained),
      td(store), num(d.mesh.nats_subscriptions), td(d.mesh.slow_consumer_drops, "num" + (d.mesh.slow_consumer_drops ? " fail" : ""))));
  }
}

async function refresh() {
  try {
    const [ups, , listeners] = await Promise.all([api("/api/v1/upstreams"), refreshHistory(), api("/api/v1/listeners")]);
    const r = rates();
    renderSummary(r);
    renderCharts();
    // Not while someone is typing a weight or a new server there.
    const typing = document.activeElement && document.activeElement.tagName === "INPUT" && $("upstreams").contains(document.activeElement);
    if (!typing) renderUpstreams(ups.upstreams, r);
    renderListeners(listeners);
    await refreshConns();
    await refreshSticky(ups.upstreams);
    if (Date.now() - lastCluster > 5000) { lastCluster = Date.now(); await refreshCluster(); }
    await refreshNodeClients();
    $("err").textContent = actionError;
  } catch (e) { showError(e); }
}

refresh();
setInterval(() => { if (!$("confirm").open) refresh(); }, POLL_MS);
