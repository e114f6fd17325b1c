// The lane model: one transport's counters and figures, whatever the
// transport, and this page's lanes (the server's five, then the auto lane).
import { util } from "../pushwire.mjs";
import { serverNowUs } from "./clock.js";
import { config, href } from "./page.js";
import { record } from "./timeline.js";

const WINDOW_MS = 30_000; // rolling window of the latency figures
const CHART_MS = 60_000; // samples kept: the latency chart's span

export class Lane {
  /** `lane` as in the page's config: {id, title, name, path, color}. */
  constructor({ id, title, name, path, color }) {
    Object.assign(this, { id, title, name, path, color, received: 0, gaps: 0, dups: 0, resets: 0, requests: 0, empties: 0, reconnects: 0, replayed: 0 });
    this.el = document.getElementById(`lane-${id}`);
    this.lastSeq = null; // position in the channel; null until the lane knows where it starts
    this.epoch = null;
    this.samples = []; // live deliveries: {t: ms, latency: ms}
    this.catchUp = null; // the latest replay after a reconnect: {count, maxMs, connectedAtUs}
    this.recent = [];
    this.latest = null; // the latest message as it came: {message, raw (text or bytes)}
    this.connectedAtUs = null; // when the connection delivering now began to open, on the server's clock
    this.bytes = null; // from /api/inspect
    this.since = null; // the counts when the lane's settings last changed (bytes per message are of what came after); "next": at the next reading
    this.negotiated = {}; // what its connection agreed on: encoding, subprotocol, extensions, contentEncoding
    this.status = "starting";
    this.reason = "";
    this.protocol = null; // "http/1.1" or "h2", as the browser reports it; "h3" for WebTransport
  }

  /** Where the lane starts (the head when it subscribed), without counting a gap. */
  start(seq, epoch) {
    if (this.lastSeq === null || this.epoch !== epoch) [this.lastSeq, this.epoch] = [seq, epoch];
  }

  /** The lane starts opening a connection (`atUs`: when, on the server's clock; now by default). */
  connecting(atUs = serverNowUs()) {
    this.connectedAtUs = atUs;
  }

  /**
   * A delivered message; `raw` is its payload as it came (JSON text or MessagePack bytes).
   *
   * Replayed or live: a message published before the lane began opening the connection
   * that delivered it (`ts` older than `connectedAtUs`) could not have come live: it was
   * resumed from the cursor after an outage (a lab change, a drop), and its delay
   * measures how long the lane was away, not the transport. Those are counted apart,
   * with their catch-up delay; the latency figures and the chart hold live deliveries
   * only. (A message published while the connection was being opened counts as live:
   * its delay includes the handshake, which is the transport's own cost.)
   */
  message(m, raw = null) {
    if (this.lastSeq !== null && m.seq <= this.lastSeq) {
      this.dups++;
      return;
    }
    if (this.lastSeq !== null && m.seq > this.lastSeq + 1) this.gaps += m.seq - this.lastSeq - 1;
    this.lastSeq = m.seq;
    this.received++;
    const latency = Math.max(0, (serverNowUs() - m.ts) / 1000);
    if (this.connectedAtUs !== null && m.ts < this.connectedAtUs) {
      this.replayed++;
      if (this.catchUp?.connectedAtUs !== this.connectedAtUs) this.catchUp = { count: 0, maxMs: 0, connectedAtUs: this.connectedAtUs };
      this.catchUp.count++;
      this.catchUp.maxMs = Math.max(this.catchUp.maxMs, latency);
    } else this.samples.push({ t: Date.now(), latency });
    const text = jsonText(m.data);
    this.recent.unshift({ seq: m.seq, latency, text: text.slice(0, 60) });
    this.recent.length = Math.min(this.recent.length, 5);
    this.latest = { message: m, raw }; // raw: null where the lane has no payload of its own (SSE, polls: an answer holds several)
  }

  reset(r) {
    this.resets++;
    record(this.id, "reset", r.reason);
    [this.lastSeq, this.epoch] = [r.seq, r.epoch];
  }

  /** Another channel: its figures start afresh, while the connection counts carry on. */
  clearFigures() {
    Object.assign(this, { received: 0, gaps: 0, dups: 0, replayed: 0, catchUp: null, samples: [], recent: [] });
    this.markSettings();
  }

  /**
   * The lane's settings change (compression, encoding, channel): bytes per message
   * count from the server's next reading, when the lane has reconnected with them
   * (until then its old connection's last bytes may still be counting).
   */
  markSettings() {
    this.since = "next";
  }

  /** The server's byte counts for this lane, read when `received` messages had come. */
  counted(bytes) {
    this.bytes = bytes;
    if (this.since === "next") this.since = { ...bytes };
  }

  cursor(channel) {
    return this.lastSeq === null ? "" : util.position(channel, this.lastSeq, this.epoch);
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

  /** Bytes per message since the lane's settings last changed (the server's counts
   * and the messages received, both read at the same moment): on the wire, or with
   * what the server sent counted before compression (`uncompressed`). Over HTTP/2 a
   * request's bytes are interleaved with others' on one connection: the server counts
   * them per connection, not per lane. */
  bytesPerMessage(uncompressed = false) {
    if (!this.bytes || this.protocol === "h2" || this.since === "next") return null;
    const since = this.since || { bytes_sent: 0, bytes_sent_uncompressed: 0, bytes_received: 0, received: 0 };
    const messages = this.bytes.received - since.received;
    if (messages <= 0) return null;
    const sent = uncompressed ? "bytes_sent_uncompressed" : "bytes_sent";
    return (this.bytes[sent] - since[sent] + this.bytes.bytes_received - since.bytes_received) / messages;
  }

  summary() {
    const { p50, p95, p99 } = this.percentiles();
    const { id, status, reason, received, gaps, dups, resets, requests, empties, reconnects, replayed, transport, protocol } = this;
    const negotiated = { ...this.negotiated };
    const catchUpMs = this.catchUp ? this.catchUp.maxMs : null;
    // The auto lane's: why it is not on each better transport, and its probes.
    const { reasons, probes, probeNote } = this;
    return {
      ...{ id, status, reason, transport, protocol, negotiated, received, gaps, dups, resets, requests, empties, reconnects, replayed, catchUpMs, p50, p95, p99 },
      ...{ bytesPerMessage: this.bytesPerMessage(), uncompressedBytesPerMessage: this.bytesPerMessage(true), reasons, probes, probeNote },
    };
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
    if (this.reasons) this.renderProbing(field);
    // Past a second (a catch-up after an outage) in seconds, with a small unit, so that the figure stays short.
    for (const k of ["p50", "p95", "p99"]) {
      const v = s[k];
      if (v === null || v < 1000) field(k).textContent = fmt(v, v !== null && v < 10 ? 1 : 0);
      else field(k).replaceChildren((v / 1000).toFixed(v < 10_000 ? 1 : 0), Object.assign(document.createElement("small"), { textContent: " s" }));
    }
    for (const k of ["received", "gaps", "dups", "requests", "empties", "reconnects", "replayed"]) field(k).textContent = s[k];
    field("catchUp").textContent = s.catchUpMs === null ? "–" : formatMs(s.catchUpMs);
    field("catchUp").title = this.catchUp ? `the latest replay: ${this.catchUp.count} messages, the oldest ${formatMs(s.catchUpMs)} late` : "";
    const bytes = (v) => (v !== null ? Math.round(v) : s.protocol === "h2" ? "n/a on HTTP/2" : "–");
    field("bytesPerMessage").textContent = bytes(s.bytesPerMessage);
    field("uncompressedBytesPerMessage").textContent = bytes(s.uncompressedBytesPerMessage);
    field("negotiated").textContent = describeNegotiated(s.negotiated, this.id);
    field("protocol").textContent = s.protocol === "h2" ? "HTTP/2" : s.protocol === "http/1.1" ? "HTTP/1.1" : s.protocol || "–";
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

/** JSON text of a value that MessagePack may have given BigInts (which JSON.stringify refuses). */
export const jsonText = (value) => JSON.stringify(value, (_, v) => (typeof v === "bigint" ? String(v) : v)) ?? "";

const formatMs = (ms) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`);

/** What a lane's connection negotiated, in a line: its encoding, then compression as the protocol names it. */
function describeNegotiated(n, id) {
  if (!n.encoding) return "–";
  const encoding = n.encoding === "msgpack" ? "MessagePack" : id === "sse" || n.transport === "sse" ? "JSON (SSE is text)" : "JSON";
  const parts = [n.subprotocol ? `${encoding} (${n.subprotocol})` : encoding];
  if ("extensions" in n) parts.push(n.extensions || "no extension (uncompressed)");
  if ("contentEncoding" in n) parts.push(n.contentEncoding ? `Content-Encoding: ${n.contentEncoding}` : "Content-Encoding: …");
  if (n.protocol === "h3") parts.push("one QUIC stream (h3) · bytes: UDP payload, encrypted, QUIC headers and acks included");
  return parts.join(" · ");
}

/** The fifth lane: the pushwire.js client, which negotiates its transport. */
class AutoLane extends Lane {
  constructor(lane) {
    super(lane);
    Object.assign(this, { transport: null, reasons: {}, probes: 0, probeNote: "", client: null });
  }

  /** Why it left each better transport, and when it tries them again. */
  renderProbing(field) {
    field("reasons").replaceChildren(
      ...Object.entries(this.reasons).map(([name, why]) => {
        const li = document.createElement("li");
        li.append(Object.assign(document.createElement("b"), { textContent: name }), ` ✗ ${why}`);
        return li;
      }),
    );
    const next = this.client?.nextProbe;
    const plan = !Object.keys(this.reasons).length
      ? "on the best transport: nothing to probe"
      : `probes every ${this.client.options.probeInterval / 1000} s${next ? ` · next in ${Math.max(0, Math.ceil((next - Date.now()) / 1000))} s` : ""}`;
    field("probe").textContent = [plan, this.probeNote].filter(Boolean).join(" · last: ");
  }
}

/** The five transports' lanes, in the server's order (ids, titles, paths and colours are its). */
export const lanes = config.lanes.map((lane) => new Lane(lane));

/** The fifth lane, the pushwire.js client: measured like the others, not drawn in the charts. */
export const auto = new AutoLane({ id: "auto", title: "Auto" });

/** Every lane, the auto lane last (the order of the summary). */
export const allLanes = [...lanes, auto];

// Which HTTP version each lane's requests really used, as the browser saw it
// (a finished request's resource timing). A stream that is still open has no
// entry yet: until it does, it shares the page's own connection's protocol.
const pageProtocol = performance.getEntriesByType("navigation")[0]?.nextHopProtocol || null;
// A WebSocket upgrades a connection of its own, WebTransport runs on QUIC: each says when it is up.
for (const lane of lanes) lane.protocol = ["websocket", "webtransport"].includes(lane.id) ? null : pageProtocol;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const path = new URL(entry.name).pathname;
    const lane = lanes.find((l) => new URL(href(l.path)).pathname === path);
    if (lane && entry.nextHopProtocol) lane.protocol = entry.nextHopProtocol;
  }
}).observe({ type: "resource", buffered: true });
