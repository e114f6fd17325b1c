// The lane model: one transport's counters and figures, whatever the
// transport, and this page's lanes (the server's four, then the auto lane).
import { util } from "../pushwire.mjs";
import { serverNowUs } from "./clock.js";
import { config, href } from "./page.js";
import { record } from "./timeline.js";

const WINDOW_MS = 30_000; // rolling window of the latency figures
const CHART_MS = 60_000; // samples kept: the latency chart's span

export class Lane {
  /** `lane` as in the page's config: {id, title, name, path, color}. */
  constructor({ id, title, name, path, color }) {
    Object.assign(this, { id, title, name, path, color, received: 0, gaps: 0, dups: 0, resets: 0, requests: 0, empties: 0, reconnects: 0 });
    this.el = document.getElementById(`lane-${id}`);
    this.lastSeq = null; // position in the channel; null until the lane knows where it starts
    this.epoch = null;
    this.samples = []; // {t: ms, latency: ms}
    this.recent = [];
    this.bytes = null; // from /api/inspect
    this.status = "starting";
    this.reason = "";
    this.protocol = null; // "http/1.1" or "h2", as the browser reports it
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
    record(this.id, "reset", r.reason);
    [this.lastSeq, this.epoch] = [r.seq, r.epoch];
  }

  /** Another channel: its figures start afresh, while the connection counts carry on. */
  clearFigures() {
    Object.assign(this, { received: 0, gaps: 0, dups: 0, samples: [], recent: [] });
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

  /** Bytes on the wire per message, both counted at the same moment. Over
   * HTTP/2 a request's bytes are interleaved with others' on one connection:
   * the server counts them per connection, not per lane. */
  bytesPerMessage() {
    if (!this.bytes || !this.bytes.received || this.protocol === "h2") return null;
    return (this.bytes.bytes_sent + this.bytes.bytes_received) / this.bytes.received;
  }

  summary() {
    const { p50, p95, p99 } = this.percentiles();
    const { id, status, reason, received, gaps, dups, resets, requests, empties, reconnects, transport, protocol } = this;
    // The auto lane's: why it is not on each better transport, and its probes.
    const { reasons, probes, probeNote } = this;
    return { id, status, reason, transport, protocol, received, gaps, dups, resets, requests, empties, reconnects, p50, p95, p99, bytesPerMessage: this.bytesPerMessage(), reasons, probes, probeNote };
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
    for (const k of ["received", "gaps", "dups", "requests", "empties", "reconnects"]) field(k).textContent = s[k];
    field("bytesPerMessage").textContent =
      s.bytesPerMessage !== null ? Math.round(s.bytesPerMessage) : s.protocol === "h2" ? "n/a on HTTP/2" : "–";
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

/** The four transports' lanes, in the server's order (ids, titles, paths and colours are its). */
export const lanes = config.lanes.map((lane) => new Lane(lane));

/** The fifth lane, the pushwire.js client: measured like the others, not drawn in the charts. */
export const auto = new AutoLane({ id: "auto", title: "Auto" });

/** Every lane, the auto lane last (the order of the summary). */
export const allLanes = [...lanes, auto];

// Which HTTP version each lane's requests really used, as the browser saw it
// (a finished request's resource timing). A stream that is still open has no
// entry yet: until it does, it shares the page's own connection's protocol.
const pageProtocol = performance.getEntriesByType("navigation")[0]?.nextHopProtocol || null;
for (const lane of lanes) lane.protocol = lane.id === "websocket" ? null : pageProtocol;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const path = new URL(entry.name).pathname;
    const lane = lanes.find((l) => new URL(href(l.path)).pathname === path);
    if (lane && entry.nextHopProtocol) lane.protocol = entry.nextHopProtocol;
  }
}).observe({ type: "resource", buffered: true });
