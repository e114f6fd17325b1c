// pushwire client: picks the best transport that actually works (WebTransport
// where the browser has it, then WebSocket, Server-Sent Events, long polling,
// short polling), falls back
// by itself, probes better transports in the background and upgrades when one
// works, and resumes every reconnect from its cursor so the application sees
// each message once, in order. No dependencies. A plain script: load it with
// <script src="/static/js/pushwire.js"> and call `pushwire.connect`, or import
// the ES module /static/js/pushwire.mjs. Loaded from a pushwire server (under
// its path prefix, if any), it connects to that server unless told a `url`.
//
//   import { connect } from "/static/js/pushwire.mjs";
//   const client = connect({ channels: ["demo"] });
//   client.on("message", (m) => console.log(m.channel, m.seq, m.data));
//   client.on("transport", (t) => console.log("now on", t.transport, t.reasons));
//
// With `encoding: "msgpack"` the same objects travel as MessagePack (API.md v1.2):
// the WebSocket asks for the subprotocol `pushwire.msgpack` and exchanges binary
// frames, the polls send `Accept: application/msgpack`. Server-Sent Events are a
// text protocol with no MessagePack form, so on that rung the client stays on JSON.
// The codec is `pushwire.msgpack` ({encode, decode}), written here: no dependency.
// WebTransport (API.md v1.2) carries the WebSocket's frames on one QUIC stream the
// server opens: JSON objects each followed by "\n", or consecutive MessagePack maps.

const ORDER = ["webtransport", "websocket", "sse", "long-poll", "poll"];
/** The WebSocket subprotocol that asks for MessagePack frames (API.md v1.2). */
const MSGPACK_SUBPROTOCOL = "pushwire.msgpack";
/** How long a WebTransport session whose stream ended may take to say why (its close code). */
const STREAM_END_GRACE_MS = 1000;

/**
 * The server a script at `scriptUrl` was loaded from: the root above its
 * `static/js/` (`https://host/pushwire/static/js/pushwire.js` gives
 * `https://host/pushwire`), so that the client works under a path prefix. The
 * page's origin when the script does not sit where a pushwire server serves it.
 */
function serverRoot(scriptUrl) {
  const served = /^(.*)\/static\/js\/pushwire\.m?js(?:[?#].*)?$/.exec(scriptUrl || "");
  if (served) return served[1];
  return typeof location === "undefined" ? "" : location.origin;
}

/** Options (all optional but `channels`); times in milliseconds. */
const DEFAULTS = {
  // The server: where this script came from. A classic script knows its own
  // URL only while it runs; as a module (pushwire.mjs) it is told `import.meta.url`.
  url: serverRoot(typeof document === "undefined" ? "" : document.currentScript?.src),
  channels: [],
  transports: ORDER,
  cursor: "",
  // Extra query parameters sent with every request (e.g. {client: "id"}).
  params: {},
  // How long a transport may take to prove it carries data before it is given up.
  openDeadline: 4000,
  // How long a WebTransport session may take to come up. A firewall that drops UDP
  // gives no error, only silence: past this, the client moves on.
  webTransportDeadline: 2500,
  // How often a client on a fallback tries the better transports again.
  probeInterval: 30000,
  backoffBase: 500,
  backoffCap: 15000,
  // A connection that stayed up this long resets the backoff.
  healthyAfter: 10000,
  longPollTimeout: 25,
  pollInterval: 1000,
  // "json" or "msgpack": how messages travel on WebTransport, the WebSocket and the polls (SSE is always JSON).
  encoding: "json",
};

function connect(options) {
  const merged = { ...DEFAULTS, ...options };
  return new Client({ ...merged, url: absolute(merged.url) });
}

/** `url` made absolute against the page (a WebSocket URL may not be relative), without a trailing slash. */
function absolute(url) {
  const page = typeof location === "undefined" ? null : location.href;
  return (url && page ? new URL(url, page).href : url).replace(/\/+$/, "");
}

// Helpers the dashboard shares (as `pushwire.util`). One object, so that the
// plain script adds one global name for them, not five.
const util = {
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    }),

  /** Exponential, capped at `cap`, with jitter: a random share of the delay, never below `floor` of it (0: full jitter). */
  backoff: (attempt, { base, cap, floor = 0 }) => Math.min(cap, base * 2 ** attempt) * (floor + (1 - floor) * Math.random()),

  /** One cursor entry (API.md "Cursor"): `channel:seq`, then `:epoch` once it is known. */
  position: (channel, seq, epoch) => `${channel}:${seq}${epoch ? ":" + epoch : ""}`,

  /** A cursor's entries as `{channel, seq, epoch}`; `epoch` is undefined where an entry has none. */
  parseCursor: (cursor) =>
    cursor.split(",").map((entry) => {
      const [channel, seq, epoch] = entry.split(":");
      return { channel, seq: Number(seq), epoch };
    }),

  /** The server a script or module at `scriptUrl` belongs to (see the default `url`). */
  serverRoot,

  /**
   * One poll or long-poll request, asking for `encoding` ("json" or "msgpack", by
   * `Accept`): `{answer, wire}`, where `answer` is `{messages, resets, cursor}` and
   * `wire` what the response was (`encoding` as the server chose it by its
   * `Content-Type`, `contentEncoding`, e.g. "gzip" or "identity"); or an error
   * carrying `retryAfter`.
   */
  async fetchPoll(url, { signal, encoding = "json" } = {}) {
    const headers = encoding === "msgpack" ? { accept: "application/msgpack" } : {};
    const response = await fetch(url, { cache: "no-store", signal, headers });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.retryAfter = Number(response.headers.get("retry-after")) || 0;
      throw error;
    }
    // The server answers JSON when it does not speak MessagePack (v1.1): go by what it says it sent.
    const msgpack = /^application\/msgpack\b/i.test(response.headers.get("content-type") || "");
    const answer = msgpack ? decodeMsgpack(await response.arrayBuffer()) : await response.json();
    const wire = { encoding: msgpack ? "msgpack" : "json", contentEncoding: response.headers.get("content-encoding") || "identity" };
    return { answer, wire };
  },
};

Object.assign(util, {
  /**
   * The server's WebTransport endpoint (`GET {server}/api/webtransport`, API.md v1.2):
   * `{url, certificate_hashes, hashes}`, `hashes` being `certificate_hashes` with each
   * value as bytes, as `serverCertificateHashes` takes them; null where the server
   * offers none (404).
   */
  async webTransportInfo(server, { signal } = {}) {
    const response = await fetch(server + "/api/webtransport", { cache: "no-store", signal });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const info = await response.json();
    const bytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (pair) => parseInt(pair, 16));
    info.certificate_hashes ||= [];
    info.hashes = info.certificate_hashes.map(({ algorithm, value }) => ({ algorithm, value: bytes(value) }));
    return info;
  },

  /** A splitter of a WebTransport stream's bytes into frames: `split(chunk)` gives the frames completed by `chunk`. */
  frameSplitter: (msgpack) => frameSplitter(msgpack),
});

class Client {
  constructor(options) {
    this.options = options;
    this.listeners = new Map();
    this.positions = new Map(); // channel -> {seq, epoch}
    this.transport = null; // the transport delivering now
    this.state = "connecting";
    this.reasons = {}; // transport -> why it was left or refused
    this.nextProbe = null; // when the better transports are tried next (ms since the epoch), on a fallback
    this.closed = false;
    this.lifetime = new AbortController(); // aborted by close(): cancels every attempt and wait
    // The transports to try, best first: those asked for, and WebTransport only
    // where the browser has it (and until the server says it offers none).
    this.ladder = ORDER.filter((t) => options.transports.includes(t) && (t !== "webtransport" || typeof WebTransport !== "undefined"));
    for (const { channel, seq, epoch } of options.cursor ? util.parseCursor(options.cursor) : []) {
      this.positions.set(channel, { seq, epoch: epoch || null });
    }
    this.run();
  }

  /**
   * Subscribes to "message", "reset", "transport", "state" or "probe"; returns an
   * unsubscribe function. A "message" listener is also told how the message came:
   * `(message, {transport, connectedAt})`, `connectedAt` being when the client began
   * opening the connection that delivered it (ms since the epoch, this clock): a
   * message published before then was replayed from the cursor, not received live.
   */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, detail, how) {
    if (this.closed && type !== "state") return;
    for (const listener of this.listeners.get(type) || []) {
      try {
        listener(detail, how);
      } catch (error) {
        console.error(error);
      }
    }
  }

  /**
   * What the delivering connection negotiated: `encoding` ("json" or "msgpack"), and
   * on a WebSocket its `subprotocol` and `extensions` (e.g. "permessage-deflate;
   * server_no_context_takeover"), on the polls the latest answer's `contentEncoding`.
   * Null while nothing delivers.
   */
  negotiated() {
    return this.active && this.state === "open" ? { transport: this.active.name, ...this.active.wire } : null;
  }

  /** The resume position: every channel the client has a position in. */
  cursor() {
    return [...this.positions].map(([c, p]) => util.position(c, p.seq, p.epoch)).join(",");
  }

  /** Stops for good: no more connections, no more events. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort();
    this.session?.end({ code: 1000, reason: "closed by the application" });
    this.setState("closed");
  }

  /** `ended`: how the connection that was delivering ended (`code`, `reason`), when it did. */
  setState(state, ended = null) {
    if (state !== this.state) {
      this.state = state;
      this.emit("state", { state, transport: this.transport, code: ended?.code ?? null, reason: ended?.reason ?? null });
    }
  }

  // ---- what every transport hands over (`conn`: the connection it came on); the one place that drops duplicates
  accept(frame, conn) {
    if (this.closed) return;
    const position = this.positions.get(frame.channel);
    if (frame.type === "subscribed") {
      if (!position) this.positions.set(frame.channel, { seq: frame.seq, epoch: frame.epoch });
      else if (!position.epoch) position.epoch = frame.epoch;
    } else if (frame.type === "reset") {
      // A connection resumed from an older cursor (a probe) may report a reset
      // the client is already past: within one epoch a position never goes back.
      if (position && position.epoch === frame.epoch && frame.seq <= position.seq) return;
      this.positions.set(frame.channel, { seq: frame.seq, epoch: frame.epoch });
      this.emit("reset", frame);
    } else if (frame.type === "message") {
      if (position && frame.seq <= position.seq) return; // already delivered (overlap while switching)
      this.positions.set(frame.channel, { seq: frame.seq, epoch: position ? position.epoch : null });
      this.emit("message", frame, { transport: conn.name, connectedAt: conn.openedAt });
    }
  }

  // ---- the loop: best working transport first, fall back, probe, reconnect
  async run() {
    const signal = this.lifetime.signal;
    let failures = 0;
    let from = 0; // where to start trying: the best, or the one that last worked
    while (!this.closed) {
      let opened = null;
      for (const name of this.ladder.slice(from)) {
        opened = await this.open(name, signal).catch((reason) => {
          this.reasons[name] = String(reason);
          return null;
        });
        if (opened || this.closed) break;
      }
      if (this.closed) return opened?.close();
      if (!opened) {
        from = 0;
        this.setState("reconnecting");
        await util.sleep(this.backoff(failures++), signal);
        continue;
      }
      const since = Date.now();
      const ended = await this.serve(opened);
      if (this.closed) return;
      // Only a connection that stayed up a while resets the backoff: one that
      // opens and fails at once must not turn into a tight loop.
      failures = Date.now() - since >= this.options.healthyAfter ? 0 : failures + 1;
      // Reconnect on the transport that was working; probes move up from there.
      from = Math.max(0, this.ladder.indexOf(this.transport));
      this.setState("reconnecting", ended);
      let delay = this.backoff(failures);
      if (ended.code === 1012) delay = Math.min(delay, Math.random() * 1000); // restarting: come back soon
      if (ended.code === 1013) delay = Math.max(delay, this.backoff(failures + 3)); // overloaded: back off more
      if (ended.retryAfter) delay = Math.max(delay, ended.retryAfter * 1000);
      await util.sleep(delay, signal);
    }
  }

  backoff(attempt) {
    // Full jitter, capped: a restart does not bring every client back at once.
    return util.backoff(attempt, { base: this.options.backoffBase, cap: this.options.backoffCap });
  }

  /**
   * Delivers over `conn` until the active transport ends, probing better ones
   * meanwhile. One session per call; ending it cancels its probe.
   */
  serve(conn) {
    return new Promise((resolve) => {
      const probes = new AbortController();
      let timer = null;
      const session = (this.session = {
        done: false,
        end: (info) => {
          if (session.done) return;
          session.done = true;
          clearTimeout(timer);
          probes.abort();
          this.active.onEnd = null;
          this.active.close();
          this.reasons[this.transport] = info.reason;
          resolve(info);
        },
      });
      const better = () => this.ladder.slice(0, this.ladder.indexOf(this.transport));
      const schedule = () => {
        this.nextProbe = null;
        if (session.done || !better().length) return;
        this.nextProbe = Date.now() + this.options.probeInterval;
        timer = setTimeout(probe, this.options.probeInterval);
      };
      const probe = async () => {
        for (const name of better()) {
          let candidate;
          try {
            candidate = await this.open(name, probes.signal);
          } catch (reason) {
            if (session.done) return;
            this.reasons[name] = String(reason);
            this.emit("probe", { transport: name, ok: false, reason: String(reason) });
            continue;
          }
          if (session.done) return candidate.close();
          this.emit("probe", { transport: name, ok: true, reason: null });
          // It works: switch. Both delivered meanwhile; the overlap is dropped by seq.
          const old = this.active;
          old.onEnd = null;
          old.close();
          candidate.onEnd = session.end;
          this.use(candidate);
          break;
        }
        schedule();
      };
      conn.onEnd = session.end;
      this.use(conn);
      schedule();
    });
  }

  use(conn) {
    this.active = conn;
    const previous = this.transport;
    this.transport = conn.name;
    if (previous !== conn.name) this.emit("transport", { transport: conn.name, previous, reasons: { ...this.reasons }, negotiated: { ...conn.wire } });
    this.setState("open");
  }

  /** Opens a transport; resolves once it has proven to carry data. `signal` cancels the attempt. */
  open(name, signal) {
    const opener = { webtransport: openWebTransport, websocket: openWebSocket, sse: openSse, "long-poll": openLongPoll, poll: openPoll }[name];
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject("cancelled");
      const attempt = opener(this, name);
      const cancel = () => {
        attempt.conn.close();
        reject("cancelled");
      };
      signal.addEventListener("abort", cancel, { once: true });
      attempt.ready.then(
        (conn) => {
          signal.removeEventListener("abort", cancel);
          resolve(conn);
        },
        (reason) => {
          signal.removeEventListener("abort", cancel);
          reject(reason);
        },
      );
    });
  }

  query(extra = "") {
    const cursor = this.cursor();
    const channels = this.options.channels.map(encodeURIComponent).join(",");
    const params = Object.entries(this.options.params).map(([k, v]) => `&${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
    return `channels=${channels}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}${params.join("")}${extra}`;
  }
}

/** A transport connection, as the client sees it: `close()` stops it quietly,
 * `end(info)` reports that it stopped by itself. */
function connection(name) {
  const conn = {
    name,
    openedAt: Date.now(),
    wire: {}, // what it negotiated (see Client.negotiated)
    onEnd: null,
    closed: false,
    stop() {},
    close() {
      conn.closed = true;
      conn.stop();
    },
    end(info) {
      if (conn.closed) return;
      conn.close();
      conn.onEnd?.(info);
    },
  };
  return conn;
}

function openWebSocket(client, name) {
  const conn = connection(name);
  const ready = new Promise((resolve, reject) => {
    if (typeof WebSocket === "undefined") return reject("no WebSocket in this environment");
    const url = client.options.url.replace(/^http/, "ws") + "/ws?" + client.query();
    // JSON offers no subprotocol, as v1.1 clients did: a browser fails a socket whose
    // offer the server leaves unanswered, and a v1.1 server answers none.
    const msgpack = client.options.encoding === "msgpack";
    let socket;
    try {
      socket = msgpack ? new WebSocket(url, [MSGPACK_SUBPROTOCOL]) : new WebSocket(url);
    } catch (error) {
      return reject(`cannot open: ${error.message}`);
    }
    socket.binaryType = "arraybuffer";
    // A binary frame is MessagePack, a text frame JSON, whichever was asked for.
    const decode = (data) => (typeof data === "string" ? JSON.parse(data) : decodeMsgpack(data));
    const ping = msgpack ? encodeMsgpack({ type: "ping" }) : '{"type":"ping"}';
    socket.onopen = () => {
      conn.wire = { encoding: socket.protocol === MSGPACK_SUBPROTOCOL ? "msgpack" : "json", subprotocol: socket.protocol, extensions: socket.extensions };
    };
    let proven = false;
    let welcomed = false;
    let heartbeat = null;
    let lastFrame = Date.now();
    const pendingSubscribed = new Set(client.options.channels);
    // A proxy that swallows frames leaves an open socket that says nothing.
    const deadline = setTimeout(() => {
      conn.close();
      reject(welcomed ? "no subscribed frame within the deadline" : "no welcome within the deadline (a proxy swallowing frames?)");
    }, client.options.openDeadline);
    conn.stop = () => {
      clearTimeout(deadline);
      clearInterval(heartbeat);
      socket.close(1000);
    };
    socket.onmessage = (event) => {
      if (conn.closed) return;
      lastFrame = Date.now();
      const frame = decode(event.data);
      if (frame.type === "welcome") {
        welcomed = true;
        // The server pings at the protocol level, which a page cannot see:
        // ask for a pong now and then, so that a dead path is noticed.
        const every = frame.heartbeat_ms || 25000;
        heartbeat = setInterval(() => {
          if (Date.now() - lastFrame > every + client.options.openDeadline) {
            return conn.end({ code: null, reason: "no frame within the heartbeat; connection presumed dead" });
          }
          socket.send(ping);
        }, every);
      }
      if (frame.type === "subscribed") pendingSubscribed.delete(frame.channel);
      client.accept(frame, conn);
      if (!proven && welcomed && pendingSubscribed.size === 0) {
        proven = true;
        clearTimeout(deadline);
        resolve(conn);
      }
    };
    socket.onclose = (event) => {
      if (!proven) return reject(`closed ${event.code} before welcome (upgrade refused or blocked?)`);
      conn.end({ code: event.code, reason: `closed ${event.code} ${event.reason || ""}`.trim() });
    };
  });
  return { conn, ready };
}

/**
 * Where the server takes WebTransport sessions (API.md v1.2 discovery). A server that
 * offers none (404: switched off, or older than v1.2) leaves the client's ladder for
 * good; any other failure is a reason.
 */
async function discoverWebTransport(client, signal) {
  let info;
  try {
    info = await util.webTransportInfo(client.options.url, { signal });
  } catch (error) {
    throw `no discovery (GET /api/webtransport: ${error.message})`;
  }
  if (info) return info;
  client.ladder = client.ladder.filter((t) => t !== "webtransport");
  throw "the server offers no WebTransport (GET /api/webtransport: 404)";
}

/** Splits a stream's bytes into frames: JSON objects each ended by "\n", or consecutive MessagePack maps. */
function frameSplitter(msgpack) {
  if (!msgpack) {
    const decoder = new TextDecoder();
    let text = "";
    return (bytes) => {
      text += decoder.decode(bytes, { stream: true });
      const lines = text.split("\n");
      text = lines.pop();
      return lines.filter((line) => line.trim()).map((line) => JSON.parse(line));
    };
  }
  let pending = new Uint8Array(0);
  return (bytes) => {
    let joined = bytes;
    if (pending.length) {
      joined = new Uint8Array(pending.length + bytes.length);
      joined.set(pending);
      joined.set(bytes, pending.length);
    }
    const frames = [];
    let at = 0;
    while (at < joined.length) {
      const reader = new MsgpackReader(joined.subarray(at));
      try {
        frames.push(reader.value());
      } catch (error) {
        if (error instanceof MsgpackTruncated) break; // the rest of the map is in a later chunk
        throw error;
      }
      at += reader.at;
    }
    pending = joined.slice(at);
    return frames;
  };
}

/**
 * WebTransport (HTTP/3 over QUIC, UDP): the server opens one bidirectional stream
 * and sends the WebSocket's frames on it. A firewall that drops UDP answers nothing,
 * so the session must come up within `webTransportDeadline`; a self-signed
 * certificate is trusted by its hash (`serverCertificateHashes`), as discovery gives it.
 */
function openWebTransport(client, name) {
  const conn = connection(name);
  const msgpack = client.options.encoding === "msgpack";
  const discovery = new AbortController();
  let session = null;
  let deadline = null;
  conn.stop = () => {
    clearTimeout(deadline);
    discovery.abort();
    try {
      session?.close({ closeCode: 1000, reason: "" });
    } catch {
      // already closed
    }
  };
  const ready = new Promise((resolve, reject) => {
    let proven = false;
    const fail = (reason) => {
      if (proven) return;
      conn.close();
      reject(reason);
    };
    /** The session is over: before it proved itself a reason to move on, after it an end. */
    const over = (code, reason) => (proven ? conn.end({ code, reason }) : fail(`session closed before welcome (${reason})`));
    (async () => {
      if (typeof WebTransport === "undefined") return fail("no WebTransport in this environment");
      const { url, hashes } = await discoverWebTransport(client, discovery.signal);
      if (conn.closed) return;
      const target = `${url}?${client.query(msgpack ? "&format=msgpack" : "")}`;
      try {
        session = hashes.length ? new WebTransport(target, { serverCertificateHashes: hashes }) : new WebTransport(target);
      } catch (error) {
        return fail(`cannot open: ${error.message}`);
      }
      conn.wire = { encoding: msgpack ? "msgpack" : "json", protocol: "h3" };
      session.closed.catch(() => {}); // told below, once the session is up
      const seconds = client.options.webTransportDeadline / 1000;
      deadline = setTimeout(() => fail(`no answer over UDP within ${seconds} s (blocked by a firewall?)`), client.options.webTransportDeadline);
      try {
        await session.ready;
      } catch (error) {
        return fail(`session refused or failed: ${error.message}`);
      }
      if (conn.closed) return;
      session.closed.then(
        (info) => over(info?.closeCode ?? null, `session closed ${info?.closeCode ?? ""} ${info?.reason || ""}`.replace(/\s+/g, " ").trim()),
        // The server closes with a code (its CLOSE_WEBTRANSPORT_SESSION capsule); a rejection is a lost connection.
        (error) => over(null, `session ended: ${error.message}`),
      );
      // Up: now the server's stream, its welcome and a subscribed per channel, as on a WebSocket.
      clearTimeout(deadline);
      let welcomed = false;
      deadline = setTimeout(
        () => fail(welcomed ? "no subscribed frame within the deadline" : "session up, then no welcome within the deadline"),
        client.options.openDeadline,
      );
      const { value: stream, done } = await session.incomingBidirectionalStreams.getReader().read();
      if (done || conn.closed) return;
      const reader = stream.readable.getReader();
      const split = frameSplitter(msgpack);
      const pendingSubscribed = new Set(client.options.channels);
      for (;;) {
        const { value, done } = await reader.read();
        if (conn.closed) return;
        if (done) {
          // The server finishes its stream, then closes the session with the code (`closed` above): wait for it.
          await Promise.race([session.closed.catch(() => {}), util.sleep(STREAM_END_GRACE_MS)]);
          return over(null, "stream ended by the server");
        }
        for (const frame of split(value)) {
          if (frame.type === "welcome") welcomed = true;
          if (frame.type === "subscribed") pendingSubscribed.delete(frame.channel);
          client.accept(frame, conn);
          if (!proven && welcomed && pendingSubscribed.size === 0) {
            proven = true;
            clearTimeout(deadline);
            resolve(conn);
          }
        }
      }
    })().catch((error) => {
      if (conn.closed) return;
      const reason = typeof error === "string" ? error : `stream failed: ${error.message}`;
      if (proven) conn.end({ code: null, reason });
      else fail(reason);
    });
  });
  return { conn, ready };
}

function openSse(client, name) {
  const conn = connection(name);
  const ready = new Promise((resolve, reject) => {
    if (typeof EventSource === "undefined") return reject("no EventSource in this environment");
    // Always JSON: SSE is a text protocol, and `/sse?format=msgpack` is a 400 (API.md v1.2).
    // Its Content-Encoding is the browser's business: EventSource does not show headers.
    const source = new EventSource(client.options.url + "/sse?" + client.query());
    conn.wire = { encoding: "json" };
    let proven = false;
    const pendingSubscribed = new Set(client.options.channels);
    // A buffering proxy lets the headers through and holds the events back.
    const deadline = setTimeout(() => {
      conn.close();
      reject("no event within the deadline (a buffering proxy?)");
    }, client.options.openDeadline);
    conn.stop = () => {
      clearTimeout(deadline);
      source.close();
    };
    const take = (event) => {
      if (conn.closed) return;
      const frame = JSON.parse(event.data);
      if (frame.type === "subscribed") pendingSubscribed.delete(frame.channel);
      client.accept(frame, conn);
      if (!proven && pendingSubscribed.size === 0) {
        proven = true;
        clearTimeout(deadline);
        resolve(conn);
      }
    };
    for (const type of ["subscribed", "message", "reset"]) source.addEventListener(type, take);
    // The client reconnects itself (with its own cursor and backoff), rather
    // than letting EventSource retry a path that may be broken.
    source.onerror = () => {
      if (!proven) {
        conn.close();
        return reject("stream refused or broken");
      }
      conn.end({ code: null, reason: "stream ended" });
    };
  });
  return { conn, ready };
}

function openPolling(client, name, path, extra, holdSeconds) {
  const conn = connection(name);
  let controller = null;
  conn.stop = () => controller?.abort();
  /** One request, aborted if it takes longer than `limit` ms (a dead path). */
  const once = async (query, limit) => {
    controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), limit);
    try {
      const url = `${client.options.url}${path}?${query}`;
      const { answer, wire } = await util.fetchPoll(url, { signal: controller.signal, encoding: client.options.encoding });
      if (conn.closed) return;
      conn.wire = wire;
      for (const { channel, seq, epoch } of util.parseCursor(answer.cursor)) {
        if (!client.positions.has(channel)) client.accept({ type: "subscribed", channel, seq, epoch }, conn);
      }
      answer.resets.forEach((r) => client.accept(r, conn));
      answer.messages.forEach((m) => client.accept(m, conn));
    } finally {
      clearTimeout(timer);
    }
  };
  const ready = (async () => {
    try {
      // The first request answers at once, so that it proves the path quickly.
      await once(client.query(extra(0)), client.options.openDeadline);
    } catch (error) {
      conn.close();
      throw controller.signal.aborted ? "no answer within the deadline" : String(error.message || error);
    }
    (async () => {
      while (!conn.closed) {
        const started = Date.now();
        try {
          await once(client.query(extra()), (holdSeconds() + 10) * 1000);
        } catch (error) {
          const reason = controller.signal.aborted ? "request timed out" : String(error.message || error);
          return conn.end({ code: null, reason, retryAfter: error.retryAfter });
        }
        if (path === "/poll") await util.sleep(Math.max(0, client.options.pollInterval - (Date.now() - started)));
      }
    })();
    return conn;
  })();
  return { conn, ready };
}

const openLongPoll = (client, name) =>
  openPolling(
    client,
    name,
    "/long-poll",
    (timeout = client.options.longPollTimeout) => `&timeout=${timeout}`,
    () => client.options.longPollTimeout,
  );
const openPoll = (client, name) => openPolling(client, name, "/poll", () => "", () => 0);

// ---- MessagePack (github.com/msgpack/msgpack/blob/master/spec.md), for `encoding: "msgpack"`.
// The decoder reads every type a pushwire server sends (API.md v1.2: nil, bool,
// integers of every width, float 64, str, array and map of every width) and float 32
// and bin besides (bin as a Uint8Array); ext is refused. Integers come back as
// Numbers, like JSON.parse gives them, except a 64-bit one beyond ±(2^53 − 1), which
// comes back as a BigInt: exact, where JSON.parse rounds it to the nearest double
// (and JSON.stringify throws on a BigInt: mind it in code that re-serialises data).
// Maps become plain objects, their keys strings. The encoder writes the shortest
// form of each value, as JSON.stringify would see it: undefined members of an
// object are left out, `toJSON` is honoured, a non-integer Number is a float 64, a
// BigInt an integer, a Uint8Array or ArrayBuffer bin.

const utf8 = { decoder: new TextDecoder(), encoder: new TextEncoder() };
const TWO_32 = 2 ** 32;

/** A MessagePack value (an ArrayBuffer, a typed array or a DataView) as a JavaScript value. */
function decodeMsgpack(input) {
  const bytes = ArrayBuffer.isView(input) ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength) : new Uint8Array(input);
  const reader = new MsgpackReader(bytes);
  const value = reader.value();
  if (reader.at !== bytes.length) throw new SyntaxError(`MessagePack: ${bytes.length - reader.at} bytes after the value`);
  return value;
}

/** `value` as MessagePack bytes (a Uint8Array). */
function encodeMsgpack(value) {
  const writer = new MsgpackWriter();
  writer.value(value);
  return writer.bytes.slice(0, writer.at);
}

/** The input ends inside a value: on a stream, the rest comes in a later chunk. */
class MsgpackTruncated extends SyntaxError {}

class MsgpackReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  /** Moves past `n` bytes and returns where they start; throws where the input ends first. */
  take(n) {
    const at = this.at;
    if (at + n > this.bytes.length) throw new MsgpackTruncated(`MessagePack: truncated at byte ${at}`);
    this.at = at + n;
    return at;
  }

  value() {
    const type = this.bytes[this.take(1)];
    if (type < 0x80) return type; // positive fixint
    if (type >= 0xe0) return type - 0x100; // negative fixint
    if (type >= 0xa0 && type < 0xc0) return this.str(type & 0x1f);
    if (type < 0x90) return this.map(type & 0x0f);
    if (type < 0xa0) return this.array(type & 0x0f);
    const view = this.view;
    switch (type) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(view.getUint8(this.take(1)));
      case 0xc5: return this.bin(view.getUint16(this.take(2)));
      case 0xc6: return this.bin(view.getUint32(this.take(4)));
      case 0xca: return view.getFloat32(this.take(4));
      case 0xcb: return view.getFloat64(this.take(8));
      case 0xcc: return view.getUint8(this.take(1));
      case 0xcd: return view.getUint16(this.take(2));
      case 0xce: return view.getUint32(this.take(4));
      case 0xcf: return this.int64(this.take(8), false);
      case 0xd0: return view.getInt8(this.take(1));
      case 0xd1: return view.getInt16(this.take(2));
      case 0xd2: return view.getInt32(this.take(4));
      case 0xd3: return this.int64(this.take(8), true);
      case 0xd9: return this.str(view.getUint8(this.take(1)));
      case 0xda: return this.str(view.getUint16(this.take(2)));
      case 0xdb: return this.str(view.getUint32(this.take(4)));
      case 0xdc: return this.array(view.getUint16(this.take(2)));
      case 0xdd: return this.array(view.getUint32(this.take(4)));
      case 0xde: return this.map(view.getUint16(this.take(2)));
      case 0xdf: return this.map(view.getUint32(this.take(4)));
    }
    const what = type === 0xc1 ? "the never-used byte c1" : `ext type ${type.toString(16)}, not supported`;
    throw new SyntaxError(`MessagePack: ${what} at byte ${this.at - 1}`);
  }

  /** A Number when exact, else a BigInt. */
  int64(at, signed) {
    const high = signed ? this.view.getInt32(at) : this.view.getUint32(at);
    const number = high * TWO_32 + this.view.getUint32(at + 4);
    // Beyond 2^53 the sum is rounded, and a rounded sum is never a safe integer.
    if (Number.isSafeInteger(number)) return number;
    return signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at);
  }

  str(length) {
    const start = this.take(length);
    const bytes = this.bytes;
    // Short ASCII strings (most keys) are quicker by hand than through TextDecoder.
    if (length <= 32) {
      let ascii = "";
      for (let i = start; i < start + length; i++) {
        if (bytes[i] >= 0x80) return utf8.decoder.decode(bytes.subarray(start, start + length));
        ascii += String.fromCharCode(bytes[i]);
      }
      return ascii;
    }
    return utf8.decoder.decode(bytes.subarray(start, start + length));
  }

  bin(length) {
    const start = this.take(length);
    return this.bytes.slice(start, start + length); // a copy: the value must not hold the whole frame
  }

  /** Refuses a length that the bytes left cannot hold (each item is at least `bytesEach`), before allocating for it. */
  count(n, bytesEach) {
    if (n * bytesEach > this.bytes.length - this.at) throw new MsgpackTruncated(`MessagePack: ${n} items announced at byte ${this.at}, too few bytes left`);
  }

  array(n) {
    this.count(n, 1);
    const array = new Array(n);
    for (let i = 0; i < n; i++) array[i] = this.value();
    return array;
  }

  map(n) {
    this.count(n, 2);
    const object = {};
    for (let i = 0; i < n; i++) {
      const key = this.value();
      const value = this.value();
      // As JSON.parse: "__proto__" is a member like any other, never the prototype.
      if (key === "__proto__") Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      else object[typeof key === "string" ? key : String(key)] = value;
    }
    return object;
  }
}

class MsgpackWriter {
  constructor() {
    this.bytes = new Uint8Array(256);
    this.view = new DataView(this.bytes.buffer);
    this.at = 0;
  }

  /** Makes room for `n` more bytes and returns where they go. */
  put(n) {
    if (this.at + n > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < this.at + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.bytes.subarray(0, this.at));
      [this.bytes, this.view] = [bigger, new DataView(bigger.buffer)];
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  byte(b) {
    this.bytes[this.put(1)] = b;
  }

  /** A type byte, then a big-endian length or number of `size` bytes (1, 2 or 4). */
  head(type, size, n) {
    const at = this.put(1 + size);
    this.bytes[at] = type;
    if (size === 1) this.view.setUint8(at + 1, n);
    else if (size === 2) this.view.setUint16(at + 1, n);
    else this.view.setUint32(at + 1, n);
  }

  /** A length-prefixed header: the fix form under `fixLimit`, else 8 (if `type8`), 16 or 32 bits. */
  sized(n, fix, fixLimit, type8, type16, type32) {
    if (n < fixLimit) this.byte(fix | n);
    else if (type8 && n < 0x100) this.head(type8, 1, n);
    else if (n < 0x10000) this.head(type16, 2, n);
    else this.head(type32, 4, n);
  }

  value(v) {
    switch (typeof v) {
      case "string":
        return this.str(v);
      case "number":
        return Number.isSafeInteger(v) ? this.int(v) : this.float(v);
      case "boolean":
        return this.byte(v ? 0xc3 : 0xc2);
      case "bigint":
        return this.bigint(v);
      case "object":
        if (v === null) return this.byte(0xc0);
        if (Array.isArray(v)) {
          this.sized(v.length, 0x90, 16, 0, 0xdc, 0xdd);
          for (const item of v) this.value(item);
          return;
        }
        if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return this.bin(v);
        if (typeof v.toJSON === "function") return this.value(v.toJSON());
        return this.map(v);
    }
    this.byte(0xc0); // undefined, a function or a symbol: null, as in a JSON array
  }

  int(v) {
    if (v >= 0) {
      if (v < 0x80) this.byte(v);
      else if (v < 0x100) this.head(0xcc, 1, v);
      else if (v < 0x10000) this.head(0xcd, 2, v);
      else if (v < TWO_32) this.head(0xce, 4, v);
      else this.bigint(BigInt(v));
    } else if (v >= -32) this.byte(v & 0xff);
    else if (v >= -0x80) this.head(0xd0, 1, v & 0xff);
    else if (v >= -0x8000) this.head(0xd1, 2, v & 0xffff);
    else if (v >= -0x80000000) this.head(0xd2, 4, v >>> 0);
    else this.bigint(BigInt(v));
  }

  bigint(v) {
    if (v >= -(2n ** 31n) && v < 2n ** 32n) return this.int(Number(v)); // a 32-bit form or shorter
    if (v >= 0n && v < 2n ** 64n) {
      const at = this.put(9);
      this.bytes[at] = 0xcf;
      this.view.setBigUint64(at + 1, v);
    } else if (v < 0n && v >= -(2n ** 63n)) {
      const at = this.put(9);
      this.bytes[at] = 0xd3;
      this.view.setBigInt64(at + 1, v);
    } else throw new RangeError(`MessagePack: ${v} does not fit 64 bits`);
  }

  float(v) {
    const at = this.put(9);
    this.bytes[at] = 0xcb;
    this.view.setFloat64(at + 1, v);
  }

  str(s) {
    // Room for the longest encoding (3 bytes per UTF-16 unit) behind the widest
    // header that length needs; the header is then narrowed to the real length.
    const most = s.length * 3;
    const width = most < 32 ? 1 : most < 0x100 ? 2 : most < 0x10000 ? 3 : 5;
    const at = this.put(width + most);
    const { written } = utf8.encoder.encodeInto(s, this.bytes.subarray(at + width, at + width + most));
    const needed = written < 32 ? 1 : written < 0x100 ? 2 : written < 0x10000 ? 3 : 5;
    if (needed < width) this.bytes.copyWithin(at + needed, at + width, at + width + written);
    this.at = at;
    this.sized(written, 0xa0, 32, 0xd9, 0xda, 0xdb);
    this.at = at + needed + written;
  }

  bin(v) {
    const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    this.sized(bytes.length, 0, 0, 0xc4, 0xc5, 0xc6);
    this.bytes.set(bytes, this.put(bytes.length));
  }

  map(object) {
    // As JSON.stringify: members whose value it would leave out are left out.
    const keys = Object.keys(object).filter((k) => !["undefined", "function", "symbol"].includes(typeof object[k]));
    this.sized(keys.length, 0x80, 16, 0, 0xde, 0xdf);
    for (const key of keys) {
      this.str(key);
      this.value(object[key]);
    }
  }
}

globalThis.pushwire = { connect, util, msgpack: { encode: encodeMsgpack, decode: decodeMsgpack, SUBPROTOCOL: MSGPACK_SUBPROTOCOL } };
