// pushwire client: picks the best transport that actually works (WebSocket,
// then Server-Sent Events, then long polling, then short polling), falls back
// by itself, probes better transports in the background and upgrades when one
// works, and resumes every reconnect from its cursor so the application sees
// each message once, in order. No dependencies. A plain script: load it with
// <script src="/static/js/pushwire.js"> and call `pushwire.connect`, or import
// the ES module /static/js/pushwire.mjs.
//
//   import { connect } from "/static/js/pushwire.mjs";
//   const client = connect({ channels: ["demo"] });
//   client.on("message", (m) => console.log(m.channel, m.seq, m.data));
//   client.on("transport", (t) => console.log("now on", t.transport, t.reasons));

const ORDER = ["websocket", "sse", "long-poll", "poll"];

/** Options (all optional but `channels`); times in milliseconds. */
const DEFAULTS = {
  url: typeof location === "undefined" ? "" : location.origin,
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
  longPollTimeout: 25,
  pollInterval: 1000,
};

function connect(options) {
  return new Client({ ...DEFAULTS, ...options });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Client {
  constructor(options) {
    this.options = options;
    this.listeners = new Map();
    this.positions = new Map(); // channel -> {seq, epoch}
    this.transport = null; // the transport delivering now
    this.state = "connecting";
    this.reasons = {}; // transport -> why it was left or refused
    this.closed = false;
    for (const entry of options.cursor ? options.cursor.split(",") : []) {
      const [channel, seq, epoch] = entry.split(":");
      this.positions.set(channel, { seq: Number(seq), epoch: epoch || null });
    }
    this.run();
  }

  /** Subscribes to "message", "reset", "transport", "state" or "error". */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, detail) {
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
    return [...this.positions].map(([c, p]) => `${c}:${p.seq}${p.epoch ? ":" + p.epoch : ""}`).join(",");
  }

  close() {
    this.closed = true;
    this.active?.close();
    this.probing?.close();
    this.setState("closed");
  }

  setState(state) {
    if (state !== this.state) this.emit("state", { state, transport: this.transport });
    this.state = state;
  }

  // ---- what every transport hands over; the one place that drops duplicates
  accept(frame) {
    const position = this.positions.get(frame.channel);
    if (frame.type === "subscribed") {
      if (!position) this.positions.set(frame.channel, { seq: frame.seq, epoch: frame.epoch });
      else if (!position.epoch) position.epoch = frame.epoch;
    } else if (frame.type === "reset") {
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
    let failures = 0;
    let from = 0; // where to start trying: the best, or the one that last worked
    while (!this.closed) {
      let opened = null;
      for (const name of allowed.slice(from)) {
        opened = await this.open(name).catch((reason) => {
          this.reasons[name] = String(reason);
          return null;
        });
        if (opened || this.closed) break;
      }
      if (this.closed) return opened?.close();
      if (!opened) {
        from = 0;
        this.setState("reconnecting");
        await sleep(this.backoff(failures++));
        continue;
      }
      failures = 0;
      const ended = await this.serve(opened, allowed);
      if (this.closed) return;
      // Reconnect on the transport that was working; probes move up from there.
      from = allowed.indexOf(this.transport);
      this.setState("reconnecting");
      const delay = ended.code === 1012 ? Math.random() * 1000 : this.backoff(ended.code === 1013 ? 4 : failures++);
      await sleep(delay);
    }
  }

  backoff(attempt) {
    // Full jitter, capped: a restart does not bring every client back at once.
    return Math.random() * Math.min(this.options.backoffCap, this.options.backoffBase * 2 ** attempt);
  }

  /** Delivers over `conn` until the active transport ends, probing better ones meanwhile. */
  serve(conn, allowed) {
    return new Promise((resolve) => {
      let timer = null;
      const ended = (info) => {
        clearTimeout(timer);
        this.probing?.close();
        this.reasons[this.transport] = info.reason;
        resolve(info);
      };
      const better = () => allowed.slice(0, allowed.indexOf(this.transport));
      const schedule = () => {
        if (better().length && !this.closed) timer = setTimeout(probe, this.options.probeInterval);
      };
      const probe = async () => {
        for (const name of better()) {
          let candidate;
          try {
            candidate = this.probing = await this.open(name);
          } catch (reason) {
            this.reasons[name] = String(reason);
            continue;
          } finally {
            this.probing = null;
          }
          if (this.closed || this.active.closed) return candidate.close();
          // It works: switch. Both delivered meanwhile; the overlap is dropped by seq.
          const old = this.active;
          old.onEnd = null;
          old.close();
          candidate.onEnd = ended;
          this.use(candidate);
          break;
        }
        schedule();
      };
      conn.onEnd = ended;
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

  /** Opens a transport; resolves once it has proven to carry data. */
  open(name) {
    const opener = { websocket: openWebSocket, sse: openSse, "long-poll": openLongPoll, poll: openPoll }[name];
    return opener(this, name);
  }

  query(extra = "") {
    const cursor = this.cursor();
    const channels = this.options.channels.map(encodeURIComponent).join(",");
    const params = Object.entries(this.options.params).map(([k, v]) => `&${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
    return `channels=${channels}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}${params.join("")}${extra}`;
  }
}

/** A transport connection, as the client sees it. */
function connection(name) {
  return { name, onEnd: null, closed: false, close() {}, end(info) {
    if (this.closed) return;
    this.closed = true;
    this.close();
    this.onEnd?.(info);
  } };
}

function openWebSocket(client, name) {
  return new Promise((resolve, reject) => {
    if (typeof WebSocket === "undefined") return reject("no WebSocket in this environment");
    const url = client.options.url.replace(/^http/, "ws") + "/ws?" + client.query();
    const conn = connection(name);
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      return reject(`cannot open: ${error.message}`);
    }
    let proven = false;
    let welcomed = false;
    const pendingSubscribed = new Set(client.options.channels);
    // A proxy that swallows frames leaves an open socket that says nothing.
    const deadline = setTimeout(() => {
      socket.close();
      reject(welcomed ? "no subscribed frame within the deadline" : "no welcome within the deadline (a proxy swallowing frames?)");
    }, client.options.openDeadline);
    conn.close = () => socket.close(1000);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "welcome") welcomed = true;
      if (frame.type === "subscribed") pendingSubscribed.delete(frame.channel);
      client.accept(frame);
      if (!proven && welcomed && pendingSubscribed.size === 0) {
        proven = true;
        clearTimeout(deadline);
        resolve(conn);
      }
    };
    socket.onclose = (event) => {
      clearTimeout(deadline);
      if (!proven) return reject(`closed ${event.code} before welcome (upgrade refused or blocked?)`);
      conn.end({ code: event.code, reason: `closed ${event.code} ${event.reason || ""}`.trim() });
    };
  });
}

function openSse(client, name) {
  return new Promise((resolve, reject) => {
    if (typeof EventSource === "undefined") return reject("no EventSource in this environment");
    const conn = connection(name);
    const source = new EventSource(client.options.url + "/sse?" + client.query());
    let proven = false;
    const pendingSubscribed = new Set(client.options.channels);
    // A buffering proxy lets the headers through and holds the events back.
    const deadline = setTimeout(() => {
      source.close();
      reject("no event within the deadline (a buffering proxy?)");
    }, client.options.openDeadline);
    conn.close = () => source.close();
    const take = (event) => {
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
      source.close();
      clearTimeout(deadline);
      if (!proven) return reject("stream refused or broken");
      conn.end({ code: null, reason: "stream ended" });
    };
  });
}

function openPolling(client, name, path, extra) {
  return new Promise((resolve, reject) => {
    const conn = connection(name);
    const controller = new AbortController();
    conn.close = () => controller.abort();
    let first = true;
    const once = async () => {
      // The first request answers at once, so that it proves the path quickly.
      const response = await fetch(`${client.options.url}${path}?${client.query(first ? extra(0) : extra())}`, {
        cache: "no-store",
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      for (const entry of answer.cursor.split(",")) {
        const [channel, seq, epoch] = entry.split(":");
        if (!client.positions.has(channel)) client.accept({ type: "subscribed", channel, seq: Number(seq), epoch });
      }
      answer.resets.forEach((r) => client.accept(r));
      answer.messages.forEach((m) => client.accept(m));
      return answer;
    };
    (async () => {
      const timer = setTimeout(() => controller.abort(), client.options.openDeadline);
      try {
        await once();
      } catch (error) {
        return reject(controller.signal.aborted ? "no answer within the deadline" : String(error.message || error));
      } finally {
        clearTimeout(timer);
      }
      first = false;
      resolve(conn);
      while (!conn.closed) {
        const started = Date.now();
        try {
          await once();
        } catch (error) {
          return conn.end({ code: null, reason: String(error.message || error) });
        }
        if (path === "/poll") await sleep(Math.max(0, client.options.pollInterval - (Date.now() - started)));
      }
    })();
  });
}

const openLongPoll = (client, name) =>
  openPolling(client, name, "/long-poll", (timeout = client.options.longPollTimeout) => `&timeout=${timeout}`);
const openPoll = (client, name) => openPolling(client, name, "/poll", () => "");

globalThis.pushwire = { connect };
