// The pushwire dashboard: the same channel over the four transports at once,
// with the browser's own WebSocket, EventSource and fetch, and a fifth "auto"
// lane through the pushwire.js client, which negotiates its own transport.
// Plain ES module, no third-party code. `window.pushwireDashboard.summary()` exposes the figures
// (the end-to-end test reads them).

import { connect } from "/static/js/pushwire.mjs";

const config = JSON.parse(document.getElementById("pushwire-config").textContent);
const clientId = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
const WINDOW_MS = 30_000; // rolling window of the latency figures
const CHART_MS = 60_000;
const $ = (selector, root = document) => root.querySelector(selector);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- server clock: offset = server time - local time, from the best of a few round trips
const clock = { offsetUs: 0, rttMs: null };
async function measureClock() {
  let best = null;
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now() * 1000;
    const response = await fetch("/api/time", { cache: "no-store" });
    const { now } = await response.json();
    const t1 = Date.now() * 1000;
    if (!best || t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: now - (t0 + t1) / 2 };
  }
  clock.offsetUs = best.offset;
  clock.rttMs = best.rtt / 1000;
  $("#clock").textContent = `clock offset ${(clock.offsetUs / 1000).toFixed(1)} ms (±${(clock.rttMs / 2).toFixed(1)})`;
}
const serverNowUs = () => Date.now() * 1000 + clock.offsetUs;

// ---- a lane: one transport's counters, whatever the transport
class Lane {
  constructor(id, title) {
    Object.assign(this, { id, title, received: 0, gaps: 0, dups: 0, resets: 0, requests: 0, empties: 0, reconnects: 0 });
    this.el = document.getElementById(`lane-${id}`);
    this.color = config.lanes.find((lane) => lane.id === id)?.color;
    this.lastSeq = null; // position in the channel; null until the lane knows where it starts
    this.epoch = null;
    this.samples = []; // {t: ms, latency: ms}
    this.recent = [];
    this.bytes = null; // from /api/inspect
    this.status = "starting";
    this.reason = "";
  }

  /** Where the lane starts (the head when it subscribed), without counting a gap. */
  start(seq, epoch) {
    if (this.lastSeq === null || this.epoch !== epoch) [this.lastSeq, this.epoch] = [seq, epoch];
  }

  message(m) {
    if (this.lastSeq !== null && m.seq <= this.lastSeq) {
      this.dups++;
      return;
    }
    if (this.lastSeq !== null && m.seq > this.lastSeq + 1) this.gaps += m.seq - this.lastSeq - 1;
    this.lastSeq = m.seq;
    this.received++;
    const latency = Math.max(0, (serverNowUs() - m.ts) / 1000);
    this.samples.push({ t: Date.now(), latency });
    this.recent.unshift({ seq: m.seq, latency, text: JSON.stringify(m.data).slice(0, 60), size: JSON.stringify(m).length });
    this.recent.length = Math.min(this.recent.length, 5);
  }

  reset(r) {
    this.resets++;
    [this.lastSeq, this.epoch] = [r.seq, r.epoch];
  }

  cursor(channel) {
    return this.lastSeq === null ? "" : `${channel}:${this.lastSeq}${this.epoch ? ":" + this.epoch : ""}`;
  }

  setStatus(status, reason = "") {
    [this.status, this.reason] = [status, reason];
  }

  percentiles() {
    const since = Date.now() - WINDOW_MS;
    this.samples = this.samples.filter((s) => s.t >= Date.now() - CHART_MS);
    const values = this.samples.filter((s) => s.t >= since).map((s) => s.latency).sort((a, b) => a - b);
    const at = (q) => (values.length ? values[Math.min(values.length - 1, Math.floor(q * values.length))] : null);
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
  }

  /** Bytes on the wire per message, both counted at the same moment. */
  bytesPerMessage() {
    if (!this.bytes || !this.bytes.received) return null;
    return (this.bytes.bytes_sent + this.bytes.bytes_received) / this.bytes.received;
  }

  summary() {
    const { p50, p95, p99 } = this.percentiles();
    const { id, status, reason, received, gaps, dups, resets, requests, empties, reconnects, transport } = this;
    return { id, status, reason, transport, received, gaps, dups, resets, requests, empties, reconnects, p50, p95, p99, bytesPerMessage: this.bytesPerMessage() };
  }

  render() {
    const s = this.summary();
    // Lanes show different subsets of the fields (the auto lane has no request counts).
    const none = { dataset: {}, replaceChildren() {} };
    const field = (name) => this.el.querySelector(`[data-field="${name}"]`) || none;
    const fmt = (v, digits = 1) => (v === null ? "–" : v.toFixed(digits));
    field("status").textContent = s.status;
    field("status").dataset.state = s.status;
    field("reason").textContent = s.reason;
    if (this.transport) field("transport").textContent = this.transport;
    for (const k of ["p50", "p95", "p99"]) field(k).textContent = fmt(s[k], s[k] !== null && s[k] < 10 ? 1 : 0);
    for (const k of ["received", "gaps", "dups", "requests", "empties", "reconnects"]) field(k).textContent = s[k];
    field("bytesPerMessage").textContent = s.bytesPerMessage === null ? "–" : Math.round(s.bytesPerMessage);
    field("gaps").dataset.bad = s.gaps > 0;
    field("dups").dataset.bad = s.dups > 0;
    field("recent").replaceChildren(
      ...this.recent.map((r) => {
        const li = document.createElement("li");
        li.textContent = `#${r.seq}  ${r.latency.toFixed(1)} ms  ${r.text}`;
        return li;
      }),
    );
  }
}

// ---- the four transports
const state = { channel: config.channel, generation: 0, aborter: new AbortController() };
// Ids, titles and stats names come from the server (one transport identity).
const lanes = Object.fromEntries(config.lanes.map((lane) => [lane.id, new Lane(lane.id, lane.title)]));
// The auto lane is measured like the others but not drawn in the charts.
const auto = new Lane("auto", "Auto");
auto.color = "#3d3d3d";
const autoId = `${clientId}auto`;
const query = (lane, extra = "") => {
  const cursor = lane.cursor(state.channel);
  return `channels=${encodeURIComponent(state.channel)}&client=${clientId}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}${extra}`;
};
const backoff = (attempt) => Math.min(5000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);

function runWebSocket(lane, generation) {
  if (!("WebSocket" in window)) return lane.setStatus("unavailable", "this browser has no WebSocket");
  let attempt = 0;
  const open = () => {
    if (generation !== state.generation) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?${query(lane)}`);
    let welcomed = false;
    lane.requests++;
    lane.socket = ws;
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "welcome") {
        welcomed = true;
        attempt = 0;
        lane.setStatus("live", `session ${m.session}, protocol ping every ${m.heartbeat_ms / 1000} s`);
      } else if (m.type === "subscribed") lane.start(m.seq, m.epoch);
      else if (m.type === "message") lane.message(m);
      else if (m.type === "reset") lane.reset(m);
      else if (m.type === "error") lane.setStatus("live", `server said: ${m.code}: ${m.message}`);
    };
    ws.onclose = (event) => {
      if (generation !== state.generation) return;
      lane.reconnects++;
      const why = welcomed ? `closed ${event.code} ${event.reason || ""}` : `closed ${event.code} before welcome: upgrade refused or blocked?`;
      lane.setStatus(welcomed ? "reconnecting" : "unavailable", why);
      setTimeout(open, event.code === 1013 ? backoff(attempt++ + 3) : backoff(attempt++));
    };
  };
  open();
}

function runSse(lane, generation) {
  if (!("EventSource" in window)) return lane.setStatus("unavailable", "this browser has no EventSource");
  let opened = 0;
  const open = () => {
    if (generation !== state.generation) return;
    const es = new EventSource(`/sse?${query(lane)}`);
    lane.source = es;
    es.onopen = () => {
      lane.requests++;
      if (opened++ > 0) lane.reconnects++;
      lane.setStatus("live", opened > 1 ? "reconnected by the browser with Last-Event-ID" : "stream open");
    };
    es.addEventListener("subscribed", (e) => {
      const m = JSON.parse(e.data);
      lane.start(m.seq, m.epoch);
    });
    es.addEventListener("message", (e) => lane.message(JSON.parse(e.data)));
    es.addEventListener("reset", (e) => lane.reset(JSON.parse(e.data)));
    es.onerror = () => {
      if (generation !== state.generation) return es.close();
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error status): reopen with our cursor.
        lane.setStatus(opened ? "reconnecting" : "unavailable", "stream refused or failed; retrying");
        setTimeout(open, 2000);
      } else lane.setStatus("reconnecting", "stream ended; the browser reconnects by itself");
    };
  };
  open();
}

async function runPolling(lane, generation, path, paramsFor) {
  let attempt = 0;
  while (generation === state.generation) {
    const started = Date.now();
    try {
      lane.requests++;
      const response = await fetch(`${path}?${query(lane, paramsFor())}`, { cache: "no-store", signal: state.aborter.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      if (generation !== state.generation) return;
      const [channel, seq, epoch] = answer.cursor.split(",")[0].split(":");
      // The first answer of a lane with no cursor starts at the head; its
      // cursor points after the messages it carries.
      if (lane.lastSeq === null) lane.start(answer.messages.length ? answer.messages[0].seq - 1 : Number(seq), epoch);
      answer.resets.forEach((r) => lane.reset(r));
      answer.messages.forEach((m) => lane.message(m));
      if (answer.messages.length === 0) lane.empties++;
      if (channel === state.channel) [lane.lastSeq, lane.epoch] = [Number(seq), epoch];
      attempt = 0;
      lane.setStatus("live", "");
    } catch (error) {
      if (generation !== state.generation) return; // a request of a previous channel, aborted
      lane.reconnects++;
      lane.setStatus("reconnecting", String(error.message || error));
      await sleep(backoff(attempt++));
      continue;
    }
    if (path === "/poll") await sleep(Math.max(0, Number($("#poll-interval").value || 1000) - (Date.now() - started)));
  }
}

/** The fifth lane: the fallback client, with its own tag for byte counting. */
function runAuto() {
  auto.client?.close();
  Object.assign(auto, { lastSeq: null, epoch: null, transport: null });
  const client = (auto.client = connect({ channels: [state.channel], params: { client: autoId } }));
  // Listeners of a replaced client (after a channel switch) must not touch the lane.
  const on = (type, listener) => client.on(type, (detail) => auto.client === client && listener(detail));
  on("transport", (t) => {
    auto.transport = t.transport;
    const others = Object.entries(t.reasons).filter(([name]) => name !== t.transport);
    auto.reason = others.length ? "— left " + others.map(([n, why]) => `${n}: ${why}`).join("; ") : "";
  });
  on("state", (s) => {
    if (s.state === "reconnecting") auto.reconnects++;
    auto.status = s.state === "open" ? "live" : s.state;
  });
  on("reset", (r) => auto.reset(r));
  on("message", (m) => auto.message(m));
}

function startAll() {
  const generation = ++state.generation;
  // Held requests of the previous channel would otherwise keep connections busy.
  state.aborter.abort();
  state.aborter = new AbortController();
  runAuto();
  lanes.websocket.socket?.close();
  lanes.sse.source?.close();
  for (const lane of Object.values(lanes)) {
    [lane.lastSeq, lane.epoch] = [null, null];
    lane.setStatus("connecting");
  }
  runWebSocket(lanes.websocket, generation);
  runSse(lanes.sse, generation);
  runPolling(lanes["long-poll"], generation, "/long-poll", () => `&timeout=${Math.min(60, Math.max(0, Math.round(Number($("#long-poll-timeout").value || 25))))}`);
  runPolling(lanes.poll, generation, "/poll", () => "");
}

// ---- what the server saw and sent for this page's connections
async function refreshInspection() {
  // Messages received when the server's byte counts were read.
  const counted = Object.fromEntries([...Object.values(lanes), auto].map((lane) => [lane.id, lane.received]));
  const response = await fetch(`/api/inspect/${clientId}`, { cache: "no-store" });
  if (!response.ok) return;
  const report = await response.json();
  for (const { id, name } of config.lanes) lanes[id].bytes = { ...report.transports[name], received: counted[id] };
  const autoReport = await fetch(`/api/inspect/${autoId}`, { cache: "no-store" }).then((r) => (r.ok ? r.json() : null));
  if (autoReport) {
    const all = Object.values(autoReport.transports);
    const sum = (k) => all.reduce((n, lane) => n + lane[k], 0);
    auto.bytes = { bytes_sent: sum("bytes_sent"), bytes_received: sum("bytes_received"), received: counted.auto };
  }
  const t = report.transports;
  const head = (text) => text.split("\r\n\r\n")[0] + "\r\n\r\n";
  show("websocket-request", t.websocket.request);
  show("websocket-response", t.websocket.response && head(t.websocket.response));
  show("sse-request", t.sse.request);
  show("sse-response", t.sse.response);
  show("sse-event", t.sse.last_event);
  show("long-poll-request", t.long_poll.request);
  show("long-poll-response", t.long_poll.response);
  show("poll-request", t.poll.request);
  show("poll-response", t.poll.response);
  await explainAccept(t.websocket.request, t.websocket.response);
  explainFrame();
}

function show(name, text) {
  if (text) $(`[data-raw="${name}"]`).textContent = text.replaceAll("\r\n", "↵\n");
}

async function explainAccept(request, response) {
  const key = /sec-websocket-key:\s*(\S+)/i.exec(request || "")?.[1];
  const accept = /sec-websocket-accept:\s*(\S+)/i.exec(response || "")?.[1];
  if (!key || !accept) return;
  const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  let lines = [`key from the request      ${key}`, `+ the RFC 6455 GUID       ${guid}`];
  if (crypto.subtle) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + guid)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const b64 = btoa(String.fromCharCode(...digest));
    lines.push(`SHA-1 of the two          ${hex}`, `base64 of those 20 bytes  ${b64}`, `server sent               ${accept}  ${b64 === accept ? "✓ match" : "✗ differs"}`);
  } else lines.push("(SHA-1 needs a secure context: open the page on localhost or https)", `server sent               ${accept}`);
  $('[data-raw="websocket-accept"]').textContent = lines.join("\n");
}

function explainFrame() {
  const latest = lanes.websocket.recent[0];
  if (!latest) return;
  const n = latest.size;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  $('[data-raw="websocket-frame"]').textContent = [
    `payload (the message JSON)      ${n} bytes`,
    `frame header, server → client   ${header} bytes (FIN+opcode, ${n < 126 ? "7-bit length" : n < 65536 ? "16-bit length" : "64-bit length"})`,
    `same frame, client → server     ${header + 4} bytes (adds the 4-byte mask)`,
    `on the wire                     ${n + header} bytes, ${((100 * header) / (n + header)).toFixed(1)}% overhead`,
  ].join("\n");
}

// ---- charts, drawn on canvas
function drawLatency() {
  const canvas = $("#latency-chart");
  const g = canvas.getContext("2d");
  const [w, h, pad] = [canvas.width, canvas.height, 40];
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  const series = Object.values(lanes).map((lane) => {
    const buckets = new Map();
    for (const s of lane.samples) {
      const k = Math.floor((now - s.t) / 1000);
      if (k < 60) (buckets.get(k) || buckets.set(k, []).get(k)).push(s.latency);
    }
    const points = [...buckets].map(([k, v]) => [k, v.sort((a, b) => a - b)[Math.floor(v.length / 2)]]).sort((a, b) => b[0] - a[0]);
    return { lane, points };
  });
  // A log scale: WebSocket's fractions of a millisecond and short polling's
  // hundreds fit on one chart.
  const top = Math.max(10, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const [lo, hi] = [-1, Math.ceil(Math.log10(top))];
  const yOf = (ms) => h - pad - ((h - 2 * pad) * (Math.log10(Math.max(ms, 0.1)) - lo)) / (hi - lo);
  g.strokeStyle = "#c9ced6";
  g.fillStyle = "#56606b";
  g.font = "14px system-ui";
  g.lineWidth = 1;
  for (let e = lo; e <= hi; e++) {
    const y = yOf(10 ** e);
    g.beginPath();
    g.moveTo(pad, y);
    g.lineTo(w - 10, y);
    g.stroke();
    g.fillText(e < 0 ? "0.1" : String(10 ** e), 4, y + 4);
  }
  g.fillText("60 s ago", pad, h - 12);
  g.fillText("now", w - 40, h - 12);
  for (const { lane, points } of series) {
    g.strokeStyle = lane.color;
    g.lineWidth = 3;
    g.beginPath();
    points.forEach(([k, v], i) => {
      const x = w - 10 - ((w - 10 - pad) * k) / 60;
      const y = yOf(v);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

function drawBytes() {
  const canvas = $("#bytes-chart");
  const g = canvas.getContext("2d");
  const [w, h] = [canvas.width, canvas.height];
  g.clearRect(0, 0, w, h);
  const values = Object.values(lanes).map((lane) => [lane, lane.bytesPerMessage()]);
  const max = Math.max(1, ...values.map(([, v]) => v || 0));
  const row = h / values.length;
  g.font = "16px system-ui";
  values.forEach(([lane, v], i) => {
    const y = i * row + 8;
    g.fillStyle = "#1b1f24";
    g.fillText(lane.title, 8, y + row / 2);
    const width = v ? ((w - 260) * v) / max : 0;
    g.fillStyle = lane.color;
    g.fillRect(170, y + 4, width, row - 20);
    g.fillStyle = "#1b1f24";
    g.fillText(v ? `${Math.round(v)} B` : "–", 178 + width, y + row / 2);
  });
}

// ---- controls
async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ? `${answer.error.code}: ${answer.error.message}` : `HTTP ${response.status}`);
  return answer;
}
const notice = (text) => ($("#notice").textContent = text);

$("#demo-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const rate = Number($("#demo-rate").value), payload = Number($("#demo-payload").value);
  try {
    const s = await post("/api/demo", JSON.stringify({ rate, payload }));
    notice(`demo: ${s.rate} msg/s, ${s.payload} bytes of padding on ${s.channel}`);
  } catch (error) {
    notice(`demo not changed: ${error.message}`);
  }
});
$("#publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("#publish-text").value.trim() || '{"text":"hello, class"}';
  let body = text;
  try {
    JSON.parse(text);
  } catch {
    body = JSON.stringify({ text }); // plain words become a JSON string message
  }
  try {
    const answer = await post(`/channels/${encodeURIComponent(state.channel)}/messages`, body);
    notice(`published seq ${answer.seq} on ${answer.channel}`);
  } catch (error) {
    notice(`not published: ${error.message}`);
  }
});
$("#drop").addEventListener("click", async () => {
  try {
    await post(`/api/inspect/${clientId}/drop`, "");
    await post(`/api/inspect/${autoId}/drop`, "").catch(() => {}); // unknown until it connected
    notice("the server cut this page's connections: watch them reconnect and resume");
  } catch (error) {
    notice(`drop failed: ${error.message}`);
  }
});
$("#channel").addEventListener("change", () => {
  const channel = $("#channel").value.trim();
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(channel)) return notice("a channel name is 1 to 64 of A-Z a-z 0-9 _ . -");
  state.channel = channel;
  for (const lane of [...Object.values(lanes), auto]) Object.assign(lane, { received: 0, gaps: 0, dups: 0, samples: [], recent: [] });
  startAll();
  notice(`switched to ${channel}`);
});
for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    document.querySelectorAll("[data-tab]").forEach((t) => t.setAttribute("aria-selected", t === tab));
    document.querySelectorAll("[data-panel]").forEach((p) => (p.hidden = p.dataset.panel !== tab.dataset.tab));
  });
}
document.querySelector("[data-tab]").click();

// ---- run
window.pushwireDashboard = {
  clientId,
  summary: () => Object.fromEntries([...Object.values(lanes), auto].map((lane) => [lane.id, lane.summary()])),
};
await measureClock().catch(() => notice("could not read the server clock: latencies assume synchronised clocks"));
startAll();
setInterval(() => [...Object.values(lanes), auto].forEach((lane) => lane.render()), 250);
setInterval(() => {
  drawLatency();
  drawBytes();
}, 1000);
setInterval(() => refreshInspection().catch(() => {}), 1000);
setInterval(() => measureClock().catch(() => {}), 30_000);
