// What feeds the lanes: each raw lane runs its transport with the browser's own
// WebSocket, EventSource or fetch (no client library in between, so a lane
// shows its transport as it is), and the auto lane runs the pushwire.js client.
import { connect, util } from "../pushwire.mjs";
import { labReason, probeInterval } from "./lab.js";
import { auto, lanes } from "./lanes.js";
import { $, accessToken, clientId, config, href, tokenParam, wsHref } from "./page.js";
import { record } from "./timeline.js";

const { sleep } = util;
// Equal jitter (at least half the delay) rather than the client's full jitter:
// one page's lanes are no crowd that a restart must spread out.
const backoff = (attempt) => util.backoff(attempt, { base: 250, cap: 5000, floor: 0.5 });
// How long a raw lane waits for its first frame or event before it says the path is
// silent: the client's `openDeadline`, so that both lanes judge alike.
const SILENCE_MS = 4000;
// The transports from best to last, as the client tries them.
const ORDER = ["websocket", "sse", "long-poll", "poll"];

// Every start is a new generation: a runner of an older one stops at its next
// step, and the aborter cancels its held requests.
const state = { channel: config.channel, generation: 0, aborter: new AbortController() };

/** Which runner feeds a raw lane, by lane id (the transport names pushwire.js uses too). */
const runners = { websocket: runWebSocket, sse: runSse, "long-poll": runLongPoll, poll: runPoll };

/** The channel every lane runs on. */
export const currentChannel = () => state.channel;

/** Starts every lane on `channel` from its head, stopping whatever ran before. */
export function startAll(channel) {
  state.channel = channel;
  const generation = ++state.generation;
  // Held requests of the previous channel would otherwise keep connections busy.
  state.aborter.abort();
  state.aborter = new AbortController();
  runAuto();
  for (const lane of lanes) {
    lane.connection?.close(); // the previous WebSocket or EventSource
    [lane.lastSeq, lane.epoch] = [null, null];
    lane.setStatus("connecting");
    runners[lane.id](lane, generation);
  }
}

/** A raw lane's query: this page's tag (for /api/inspect) and the lane's own cursor. */
function query(lane, extra = "") {
  const cursor = lane.cursor(state.channel);
  return `channels=${encodeURIComponent(state.channel)}&client=${clientId}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}${extra}${tokenParam()}`;
}

function runWebSocket(lane, generation) {
  if (!("WebSocket" in window)) return lane.setStatus("unavailable", "this browser has no WebSocket");
  let attempt = 0;
  const open = () => {
    if (generation !== state.generation) return;
    const ws = new WebSocket(`${wsHref(lane.path)}?${query(lane)}`);
    let [welcomed, watchdog] = [false, null];
    lane.requests++;
    lane.connection = ws;
    /** The socket is done with (`code` as a close event says, or "silent"): say why, and come back. */
    const ended = (code, why) => {
      clearTimeout(watchdog);
      ws.onclose = ws.onmessage = null;
      if (generation !== state.generation) return;
      lane.reconnects++;
      record(lane.id, "close", String(code));
      lane.setStatus(welcomed ? "reconnecting" : "unavailable", why);
      // 1013 is "try again later" (overloaded, or too slow to keep up): wait longer.
      setTimeout(open, code === 1013 ? backoff(attempt++ + 3) : backoff(attempt++));
    };
    // Upgraded, yet a relay may still pass nothing: the welcome must follow. (A
    // relay that passes nothing does not pass the closing handshake either: the
    // lane moves on without waiting for it.)
    ws.onopen = () => {
      watchdog = setTimeout(() => {
        ws.close();
        ended("silent", labReason("websocket") || `upgraded (101), then no frame for ${SILENCE_MS / 1000} s: a relay swallowing frames?`);
      }, SILENCE_MS);
    };
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "welcome") {
        welcomed = true;
        clearTimeout(watchdog);
        record(lane.id, "connect");
        // A WebSocket always upgrades an HTTP/1.1 connection of its own (no RFC 8441 here).
        lane.protocol = "http/1.1";
        attempt = 0;
        lane.setStatus("live", `session ${m.session}, protocol ping every ${m.heartbeat_ms / 1000} s`);
      } else if (m.type === "subscribed") lane.start(m.seq, m.epoch);
      else if (m.type === "message") lane.message(m);
      else if (m.type === "reset") lane.reset(m);
      else if (m.type === "error") lane.setStatus("live", `server said: ${m.code}: ${m.message}`);
    };
    ws.onclose = (event) =>
      ended(
        event.code,
        welcomed
          ? `closed ${event.code} ${event.reason || ""}`
          : labReason("websocket") || `closed ${event.code} before welcome: upgrade refused or blocked?`,
      );
  };
  open();
}

function runSse(lane, generation) {
  if (!("EventSource" in window)) return lane.setStatus("unavailable", "this browser has no EventSource");
  let opened = 0;
  const open = () => {
    if (generation !== state.generation) return;
    const es = new EventSource(`${href(lane.path)}?${query(lane)}`);
    lane.connection = es;
    let watchdog = null;
    es.onopen = () => {
      lane.requests++;
      if (opened++ > 0) lane.reconnects++;
      record(lane.id, "connect");
      lane.setStatus("live", opened > 1 ? "reconnected by the browser with Last-Event-ID" : "stream open");
      // The headers came; a buffering proxy may still hold every event back.
      clearTimeout(watchdog);
      watchdog = setTimeout(
        () => lane.setStatus("stalled", labReason("sse") || `stream open (200), but no event for ${SILENCE_MS / 1000} s: a buffering proxy holding them back?`),
        SILENCE_MS,
      );
    };
    const event = (handle) => (e) => {
      clearTimeout(watchdog);
      if (lane.status === "stalled") lane.setStatus("live", "held events arrived all at once");
      handle(JSON.parse(e.data));
    };
    es.addEventListener("subscribed", event((m) => lane.start(m.seq, m.epoch)));
    es.addEventListener("message", event((m) => lane.message(m)));
    es.addEventListener("reset", event((m) => lane.reset(m)));
    es.onerror = () => {
      clearTimeout(watchdog);
      if (generation !== state.generation) return es.close();
      record(lane.id, "close", "ended");
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error status): reopen with our cursor.
        lane.setStatus(opened ? "reconnecting" : "unavailable", "stream refused or failed; retrying");
        setTimeout(open, 2000);
      } else lane.setStatus("reconnecting", "stream ended; the browser reconnects by itself");
    };
  };
  open();
}

// The polling inputs are read before each request, so that a change applies from the next one.
const pollInterval = () => Number($("#poll-interval").value || 1000);
const longPollTimeout = () => Math.min(60, Math.max(0, Math.round(Number($("#long-poll-timeout").value || 25))));

/** The server holds each request until there is news, so the next one goes at once. */
function runLongPoll(lane, generation) {
  return runPolling(lane, generation, () => `&timeout=${longPollTimeout()}`, null);
}

/** The server answers at once, full or empty, so the lane asks again on a timer. */
function runPoll(lane, generation) {
  return runPolling(lane, generation, () => "", pollInterval);
}

/** Requests in a loop; `interval()` (short polling only) spaces their starts. */
async function runPolling(lane, generation, params, interval) {
  let attempt = 0;
  let up = false; // a request has been answered since the last failure (for the timeline)
  while (generation === state.generation) {
    const started = Date.now();
    try {
      lane.requests++;
      const answer = await util.fetchAnswer(`${href(lane.path)}?${query(lane, params())}`, state.aborter.signal);
      if (generation !== state.generation) return;
      const [{ channel, seq, epoch }] = util.parseCursor(answer.cursor);
      // The first answer of a lane with no cursor starts at the head; its
      // cursor points after the messages it carries.
      if (lane.lastSeq === null) lane.start(answer.messages.length ? answer.messages[0].seq - 1 : seq, epoch);
      answer.resets.forEach((r) => lane.reset(r));
      answer.messages.forEach((m) => lane.message(m));
      if (answer.messages.length === 0) lane.empties++;
      if (channel === state.channel) [lane.lastSeq, lane.epoch] = [seq, epoch];
      attempt = 0;
      if (!up) record(lane.id, "connect");
      up = true;
      lane.setStatus("live", "");
    } catch (error) {
      if (generation !== state.generation) return; // a request of a previous channel, aborted
      lane.reconnects++;
      if (up) record(lane.id, "close", "error");
      up = false;
      lane.setStatus("reconnecting", String(error.message || error));
      await sleep(backoff(attempt++));
      continue;
    }
    if (interval) await sleep(Math.max(0, interval() - (Date.now() - started)));
  }
}

/** The fifth lane: the fallback client, with its own tag for byte counting. */
function runAuto() {
  auto.client?.close();
  Object.assign(auto, { lastSeq: null, epoch: null, transport: null, reasons: {}, probeNote: "" });
  // Tagged with the page's id, so that the page's network lab covers it too.
  const params = { client: clientId, lane: "auto", ...(accessToken ? { access_token: accessToken } : {}) };
  const client = (auto.client = connect({ channels: [state.channel], params, probeInterval: probeInterval() }));
  // Listeners of a replaced client (after a channel switch) must not touch the lane.
  const on = (type, listener) => client.on(type, (detail) => auto.client === client && listener(detail));
  // Why it is not on each better transport: the last reason the client has for each.
  const reasons = () => {
    const better = ORDER.slice(0, ORDER.indexOf(client.transport));
    auto.reasons = Object.fromEntries(better.map((name) => [name, client.reasons[name] || "not tried"]));
  };
  on("transport", (t) => {
    auto.transport = t.transport;
    reasons();
    if (t.previous) {
      const down = ORDER.indexOf(t.transport) > ORDER.indexOf(t.previous);
      record("auto", down ? "fallback" : "upgrade", `→ ${t.transport}`);
      if (!down) auto.probeNote = `${time()} ${t.transport} works again: upgraded`;
    }
  });
  on("state", (s) => {
    if (s.state === "reconnecting") {
      auto.reconnects++;
      record("auto", "close", s.code ? String(s.code) : "ended");
    }
    if (s.state === "open") record("auto", "connect", client.transport);
    auto.status = s.state === "open" ? "live" : s.state;
  });
  on("probe", (p) => {
    auto.probes++;
    if (!p.ok) auto.probeNote = `${time()} ${p.transport} ✗ ${p.reason}`;
    record("auto", "probe");
    reasons();
  });
  on("reset", (r) => auto.reset(r));
  on("message", (m) => auto.message(m));
}

/** The auto lane's client's probe interval, changed from the lab panel. */
export function setProbeInterval(ms) {
  if (auto.client) auto.client.options.probeInterval = ms;
}

const time = () => new Date().toLocaleTimeString([], { hour12: false });
