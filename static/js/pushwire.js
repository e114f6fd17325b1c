// pushwire client: picks the best transport that actually works (WebSocket,
// then Server-Sent Events, then long polling, then short polling), falls back
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

const ORDER = ["websocket", "sse", "long-poll", "poll"];

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
  // How often a client on a fallback tries the better transports again.
  probeInterval: 30000,
  backoffBase: 500,
  backoffCap: 15000,
  // A connection that stayed up this long resets the backoff.
  healthyAfter: 10000,
  longPollTimeout: 25,
  pollInterval: 1000,
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

  /** One poll or long-poll request: its answer (`{messages, resets, cursor}`), or an error carrying `retryAfter`. */
  async fetchAnswer(url, signal) {
    const response = await fetch(url, { cache: "no-store", signal });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.retryAfter = Number(response.headers.get("retry-after")) || 0;
      throw error;
    }
    return response.json();
  },
};

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
    for (const { channel, seq, epoch } of options.cursor ? util.parseCursor(options.cursor) : []) {
      this.positions.set(channel, { seq, epoch: epoch || null });
    }
    this.run();
  }

  /** Subscribes to "message", "reset", "transport" or "state"; returns an unsubscribe function. */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, detail) {
    if (this.closed && type !== "state") return;
    for (const listener of this.listeners.get(type) || []) {
      try {
        listener(detail);
      } catch (error) {
        console.error(error);
      }
    }
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

  // ---- what every transport hands over; the one place that drops duplicates
  accept(frame) {
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
      this.emit("message", frame);
    }
  }

  // ---- the loop: best working transport first, fall back, probe, reconnect
  async run() {
    const allowed = ORDER.filter((t) => this.options.transports.includes(t));
    const signal = this.lifetime.signal;
    let failures = 0;
    let from = 0; // where to start trying: the best, or the one that last worked
    while (!this.closed) {
      let opened = null;
      for (const name of allowed.slice(from)) {
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
      const ended = await this.serve(opened, allowed);
      if (this.closed) return;
      // Only a connection that stayed up a while resets the backoff: one that
      // opens and fails at once must not turn into a tight loop.
      failures = Date.now() - since >= this.options.healthyAfter ? 0 : failures + 1;
      // Reconnect on the transport that was working; probes move up from there.
      from = allowed.indexOf(this.transport);
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
  serve(conn, allowed) {
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
      const better = () => allowed.slice(0, allowed.indexOf(this.transport));
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
    if (previous !== conn.name) this.emit("transport", { transport: conn.name, previous, reasons: { ...this.reasons } });
    this.setState("open");
  }

  /** Opens a transport; resolves once it has proven to carry data. `signal` cancels the attempt. */
  open(name, signal) {
    const opener = { websocket: openWebSocket, sse: openSse, "long-poll": openLongPoll, poll: openPoll }[name];
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
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      return reject(`cannot open: ${error.message}`);
    }
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
      const frame = JSON.parse(event.data);
      if (frame.type === "welcome") {
        welcomed = true;
        // The server pings at the protocol level, which a page cannot see:
        // ask for a pong now and then, so that a dead path is noticed.
        const every = frame.heartbeat_ms || 25000;
        heartbeat = setInterval(() => {
          if (Date.now() - lastFrame > every + client.options.openDeadline) {
            return conn.end({ code: null, reason: "no frame within the heartbeat; connection presumed dead" });
          }
          socket.send('{"type":"ping"}');
        }, every);
      }
      if (frame.type === "subscribed") pendingSubscribed.delete(frame.channel);
      client.accept(frame);
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

function openSse(client, name) {
  const conn = connection(name);
  const ready = new Promise((resolve, reject) => {
    if (typeof EventSource === "undefined") return reject("no EventSource in this environment");
    const source = new EventSource(client.options.url + "/sse?" + client.query());
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
      client.accept(frame);
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
      const answer = await util.fetchAnswer(`${client.options.url}${path}?${query}`, controller.signal);
      if (conn.closed) return;
      for (const { channel, seq, epoch } of util.parseCursor(answer.cursor)) {
        if (!client.positions.has(channel)) client.accept({ type: "subscribed", channel, seq, epoch });
      }
      answer.resets.forEach((r) => client.accept(r));
      answer.messages.forEach((m) => client.accept(m));
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

globalThis.pushwire = { connect, util };
