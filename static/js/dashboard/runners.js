// What feeds the lanes: each raw lane runs its transport with the browser's own
// WebTransport, WebSocket, EventSource or fetch (no client library in between, so a lane
// shows its transport as it is), and the auto lane runs the pushwire.js client.
import { connect, msgpack, util } from "../pushwire.mjs";
import { serverUs } from "./clock.js";
import { labReason, probeInterval } from "./lab.js";
import { allLanes, auto, lanes } from "./lanes.js";
import { $, accessToken, clientId, config, href, tokenParam, wsHref } from "./page.js";
import { record } from "./timeline.js";

const { sleep } = util;
// Equal jitter (at least half the delay) rather than the client's full jitter:
// one page's lanes are no crowd that a restart must spread out.
const backoff = (attempt) => util.backoff(attempt, { base: 250, cap: 5000, floor: 0.5 });
// How long a raw lane waits for its first frame or event before it says the path is
// silent: the client's `openDeadline`, so that both lanes judge alike.
const SILENCE_MS = 4000;
/** How long a WebTransport session whose stream ended may take to say why (its close code). */
const STREAM_END_GRACE_MS = 1000;
// The transports from best to last, as the client tries them.
const ORDER = ["webtransport", "websocket", "sse", "long-poll", "poll"];

// Every start is a new generation: a runner of an older one stops at its next
// step, and the aborter cancels its held requests. `encoding` ("json" or
// "msgpack") and `compression` (false: `?compression=off`) are the page's choice
// for its own lanes.
const state = { channel: config.channel, generation: 0, aborter: new AbortController(), encoding: "json", compression: true };

/** Which runner feeds a raw lane, by lane id (the transport names pushwire.js uses too). */
const runners = { webtransport: runWebTransport, websocket: runWebSocket, sse: runSse, "long-poll": runLongPoll, poll: runPoll };

/** The channel every lane runs on. */
export const currentChannel = () => state.channel;

/** Starts every lane on `channel` from its head, stopping whatever ran before. */
export function startAll(channel) {
  state.channel = channel;
  run({ resume: false });
}

/**
 * Reconnects every lane with this page's new choice of `encoding` and `compression`,
 * each from its own cursor: nothing is lost, and what was published during the
 * switch comes as a replay.
 */
export function restartAll(choice) {
  Object.assign(state, choice);
  for (const lane of allLanes) lane.markSettings();
  run({ resume: true });
}

/** What the page's lanes are asked to use now. */
export const choice = () => ({ encoding: state.encoding, compression: state.compression });

function run({ resume }) {
  const generation = ++state.generation;
  // Held requests of the previous generation would otherwise keep connections busy.
  state.aborter.abort();
  state.aborter = new AbortController();
  runAuto(resume);
  for (const lane of lanes) {
    lane.connection?.close(); // the previous WebSocket or EventSource
    if (!resume) [lane.lastSeq, lane.epoch] = [null, null];
    lane.negotiated = {};
    lane.setStatus("connecting");
    runners[lane.id](lane, generation);
  }
}

/** A raw lane's query: this page's tag (for /api/inspect), the lane's own cursor, and `compression=off` when chosen. */
function query(lane, extra = "") {
  const cursor = lane.cursor(state.channel);
  const compression = state.compression ? "" : "&compression=off";
  return `channels=${encodeURIComponent(state.channel)}&client=${clientId}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}${compression}${extra}${tokenParam()}`;
}

/**
 * The browser's own WebTransport: discovery, then a session trusted by the
 * certificate's hash, then the frames of the one stream the server opens. A
 * firewall that drops UDP gives no error, only silence: the lane says so after
 * SILENCE_MS, and tries again.
 */
function runWebTransport(lane, generation) {
  if (!("WebTransport" in window)) return lane.setStatus("unavailable", "this browser has no WebTransport");
  let attempt = 0;
  const again = (delay) => setTimeout(open, delay);
  const open = async () => {
    if (generation !== state.generation) return;
    let info;
    try {
      info = await util.webTransportInfo(href("/").replace(/\/$/, ""), { signal: state.aborter.signal });
    } catch (error) {
      if (generation !== state.generation) return;
      lane.setStatus("reconnecting", `no discovery (GET /api/webtransport: ${error.message})`);
      return again(backoff(attempt++));
    }
    if (generation !== state.generation) return;
    if (!info) return lane.setStatus("unavailable", "the server has WebTransport off (GET /api/webtransport: 404)");
    lane.discovery = info; // the teaching panel shows how the hash is used
    const msgpackAsked = state.encoding === "msgpack";
    const url = `${info.url}?${query(lane)}${msgpackAsked ? "&format=msgpack" : ""}`;
    let session;
    try {
      session = info.hashes.length ? new WebTransport(url, { serverCertificateHashes: info.hashes }) : new WebTransport(url);
    } catch (error) {
      return lane.setStatus("unavailable", `cannot open: ${error.message}`);
    }
    session.closed.catch(() => {}); // handled once the session is up
    lane.connecting();
    lane.requests++;
    let [welcomed, over, watchdog] = [false, false, null];
    const closeQuietly = () => {
      try {
        session.close();
      } catch {
        // already closed
      }
    };
    lane.connection = {
      close() {
        over = true;
        clearTimeout(watchdog);
        closeQuietly();
      },
    };
    /** The session is done with (`code`: its close code where the page is told one): say why, and come back. */
    const ended = (code, why) => {
      if (over) return;
      over = true;
      clearTimeout(watchdog);
      closeQuietly();
      if (generation !== state.generation) return;
      lane.reconnects++;
      record(lane.id, "close", String(code));
      lane.setStatus(welcomed ? "reconnecting" : "unavailable", why);
      again(backoff(attempt++));
    };
    watchdog = setTimeout(
      () => ended("silent", labReason("webtransport") || `no answer over UDP for ${SILENCE_MS / 1000} s: a firewall dropping UDP?`),
      SILENCE_MS,
    );
    try {
      await session.ready;
    } catch (error) {
      // Without hashes (a --tls-cert certificate) the browser checks the certificate against its CAs.
      const trust = info.hashes.length ? "" : " (no certificate hashes: the certificate must be one this browser trusts)";
      return ended("refused", `session refused or failed: ${error.message}${trust}`);
    }
    if (over) return;
    lane.protocol = "h3";
    lane.negotiated = { encoding: msgpackAsked ? "msgpack" : "json", protocol: "h3" };
    session.closed.then(
      (close) => ended(close?.closeCode ?? "closed", `session closed ${close?.closeCode ?? ""} ${close?.reason || ""}`),
      // The server closes with a CLOSE_WEBTRANSPORT_SESSION capsule (above); a rejection is a lost connection.
      (error) => ended("lost", `session ended: ${error.message}`),
    );
    try {
      const { value: stream, done } = await session.incomingBidirectionalStreams.getReader().read();
      if (done) return ended("closed", "session closed before the server opened its stream");
      const reader = stream.readable.getReader();
      const split = util.frameSplitter(msgpackAsked);
      for (;;) {
        const { value, done } = await reader.read();
        if (over) return;
        if (done) {
          // The server finishes its stream, then closes the session with the code (`closed` above): wait for it.
          await Promise.race([session.closed.catch(() => {}), util.sleep(STREAM_END_GRACE_MS)]);
          return ended("fin", "the server ended its stream");
        }
        for (const m of split(value)) {
          if (m.type === "welcome") {
            welcomed = true;
            clearTimeout(watchdog);
            record(lane.id, "connect");
            attempt = 0;
            lane.setStatus("live", `session ${m.session} on one QUIC stream; QUIC keep-alive every ${m.heartbeat_ms / 1000} s`);
          } else if (m.type === "subscribed") lane.start(m.seq, m.epoch);
          else if (m.type === "message") lane.message(m);
          else if (m.type === "reset") lane.reset(m);
          else if (m.type === "error") lane.setStatus("live", `server said: ${m.code}: ${m.message}`);
        }
      }
    } catch (error) {
      ended("error", `stream failed: ${error.message}`);
    }
  };
  open();
}

function runWebSocket(lane, generation) {
  if (!("WebSocket" in window)) return lane.setStatus("unavailable", "this browser has no WebSocket");
  let attempt = 0;
  const open = () => {
    if (generation !== state.generation) return;
    // MessagePack by its subprotocol, as API.md v1.2 asks (`?format=msgpack` would do too);
    // the browser offers permessage-deflate by itself, so `?compression=off` declines it.
    const url = `${wsHref(lane.path)}?${query(lane)}`;
    const ws = state.encoding === "msgpack" ? new WebSocket(url, [msgpack.SUBPROTOCOL]) : new WebSocket(url);
    ws.binaryType = "arraybuffer";
    lane.connecting();
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
      const encoding = ws.protocol === msgpack.SUBPROTOCOL ? "msgpack" : "json";
      lane.negotiated = { encoding, subprotocol: ws.protocol, extensions: ws.extensions };
      watchdog = setTimeout(() => {
        ws.close();
        ended("silent", labReason("websocket") || `upgraded (101), then no frame for ${SILENCE_MS / 1000} s: a relay swallowing frames?`);
      }, SILENCE_MS);
    };
    ws.onmessage = (event) => {
      // A binary frame is MessagePack, a text frame JSON.
      const m = typeof event.data === "string" ? JSON.parse(event.data) : msgpack.decode(event.data);
      if (m.type === "welcome") {
        welcomed = true;
        clearTimeout(watchdog);
        record(lane.id, "connect");
        // A WebSocket always upgrades an HTTP/1.1 connection of its own (no RFC 8441 here).
        lane.protocol = "http/1.1";
        attempt = 0;
        lane.setStatus("live", `session ${m.session}, protocol ping every ${m.heartbeat_ms / 1000} s`);
      } else if (m.type === "subscribed") lane.start(m.seq, m.epoch);
      else if (m.type === "message") lane.message(m, event.data);
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
    // Always JSON: SSE is text, and `/sse?format=msgpack` is a 400. EventSource shows no
    // headers: the Content-Encoding comes from the server's capture (wire.js).
    const es = new EventSource(`${href(lane.path)}?${query(lane)}`);
    lane.connecting();
    lane.connection = es;
    lane.negotiated = { encoding: "json", contentEncoding: null };
    let [watchdog, opens] = [null, 0];
    es.onopen = () => {
      lane.requests++;
      if (opened++ > 0) lane.reconnects++;
      // The browser's own reconnects start out of sight: there, the stream's opening is the moment.
      if (opens++ > 0) lane.connecting();
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
      lane.lastEvent = { id: e.lastEventId, type: e.type, data: e.data };
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
      // A request after a failure (or the first) opens the lane anew; the others are its routine.
      if (!up) lane.connecting();
      const url = `${href(lane.path)}?${query(lane, params())}`;
      const { answer, wire } = await util.fetchPoll(url, { signal: state.aborter.signal, encoding: state.encoding });
      if (generation !== state.generation) return;
      lane.negotiated = wire;
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

/** The fifth lane: the fallback client, with its own tag for byte counting; `resume`: from where the lane is. */
function runAuto(resume) {
  auto.client?.close();
  const cursor = resume ? auto.cursor(state.channel) : "";
  if (!resume) Object.assign(auto, { lastSeq: null, epoch: null });
  Object.assign(auto, { transport: null, reasons: {}, probeNote: "", negotiated: {} });
  // Tagged with the page's id, so that the page's network lab covers it too.
  const params = { client: clientId, lane: "auto", ...(state.compression ? {} : { compression: "off" }), ...(accessToken ? { access_token: accessToken } : {}) };
  const options = { channels: [state.channel], params, cursor, encoding: state.encoding, probeInterval: probeInterval() };
  const client = (auto.client = connect(options));
  // Listeners of a replaced client (after a channel switch) must not touch the lane.
  const on = (type, listener) => client.on(type, (detail, how) => auto.client === client && listener(detail, how));
  // Why it is not on each better transport: the last reason the client has for each.
  const reasons = () => {
    const ladder = ORDER.filter((t) => client.ladder.includes(t) || client.reasons[t]);
    const better = ladder.slice(0, ladder.indexOf(client.transport));
    auto.reasons = Object.fromEntries(better.map((name) => [name, client.reasons[name] || "not tried"]));
  };
  on("transport", (t) => {
    auto.transport = t.transport;
    auto.negotiated = t.negotiated;
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
  // The client says when it began opening the connection each message came on.
  on("message", (m, how) => {
    auto.connecting(serverUs(how.connectedAt));
    // The polls' Content-Encoding can change with each answer; an SSE stream's comes from wire.js.
    auto.negotiated = { ...auto.negotiated, ...client.negotiated() };
    auto.message(m);
  });
}

/** The auto lane's client's probe interval, changed from the lab panel. */
export function setProbeInterval(ms) {
  if (auto.client) auto.client.options.probeInterval = ms;
}

const time = () => new Date().toLocaleTimeString([], { hour12: false });
