// The "compression and encoding" panel: what permessage-deflate does to one
// WebSocket frame (RFC 7692), and the latest message in JSON beside MessagePack,
// byte by byte. The deflate is the browser's own (CompressionStream), done as
// RFC 7692 asks, and checked by inflating it back as a receiver does.
import { msgpack } from "../pushwire.mjs";
import { jsonText, lanes } from "./lanes.js";
import { $, authHeaders, href } from "./page.js";

/** The server's compression settings, from /api/stats (`{websocket, http, min_size}`); null until read, or on a v1.1 server. */
const serverCompression = { settings: null };

/** Reads the server's compression settings and says them beside the page's choice. */
export async function readServerCompression() {
  const response = await fetch(href("/api/stats"), { cache: "no-store", headers: authHeaders() });
  const settings = response.ok ? (await response.json()).compression : null;
  serverCompression.settings = settings || null;
  $("#server-compression").textContent = settings
    ? `server: WebSocket deflate ${settings.websocket}, HTTP gzip ${settings.http}, messages from ${settings.min_size} B`
    : "server: no compression (v1.1)";
}

// The sync flush that ends each compressed message: an empty stored block, whose
// last 4 bytes the sender drops and the receiver appends (RFC 7692 §7.2.1).
const TAIL = [0x00, 0x00, 0xff, 0xff];
// A final, empty fixed-Huffman block: closes a deflate stream, so that a check can end.
const END = [0x03, 0x00];

const shown = { frame: null, message: null }; // the seq each pre shows, so that each is worked out once

/** Updates both pres from the WebSocket lane's latest message (another lane's while it has none, e.g. in a lab that refuses WebSocket). */
export async function refreshEncoding() {
  const websocket = lanes.find((l) => l.id === "websocket");
  const latest = websocket.latest || lanes.find((l) => l.latest)?.latest;
  if (!latest) return;
  if (shown.message !== latest.message.seq) {
    shown.message = latest.message.seq;
    $('[data-raw="msgpack-message"]').textContent = compareEncodings(latest);
  }
  if (shown.frame !== latest.message.seq) {
    shown.frame = latest.message.seq;
    $('[data-raw="deflate-frame"]').textContent = await explainDeflate(latest, websocket.negotiated);
  }
}

/** The payload's bytes as the frame carried them: JSON text, or MessagePack. */
function payloadOf({ message, raw }) {
  if (raw instanceof ArrayBuffer) return { bytes: new Uint8Array(raw), binary: true };
  return { bytes: new TextEncoder().encode(typeof raw === "string" ? raw : jsonText(message)), binary: false };
}

async function explainDeflate(latest, negotiated) {
  const { bytes, binary } = payloadOf(latest);
  const deflated = await deflateForWebSocket(bytes);
  const opcode = binary ? "2 (binary: MessagePack)" : "1 (text: JSON)";
  const lines = [
    `before: the frame with no extension, ${frameSize(bytes.length)} bytes`,
    ...header(bytes.length, false, binary).map((l) => "  " + l),
    `  ${hexRun(bytes, 16)}   the ${binary ? "MessagePack" : "JSON"} payload, ${bytes.length} bytes`,
    "",
  ];
  if (!deflated) return [...lines, "(this browser cannot deflate here: no CompressionStream)"].join("\n");
  lines.push(
    `after permessage-deflate: ${frameSize(deflated.length)} bytes (${percent(frameSize(deflated.length), frameSize(bytes.length))})`,
    ...header(deflated.length, true, binary).map((l) => "  " + l),
    `  ${hexRun(deflated, 16)}   deflate, ${deflated.length} bytes`,
    `  ${hex(TAIL)}   dropped: the sync flush's tail, the same 4 bytes every time (RFC 7692 §7.2.1);`,
    `               the receiver appends them and inflates: checked here, gives back ${bytes.length} bytes`,
    `opcode stays ${opcode}; RSV1 set says "compressed". With server_no_context_takeover each`,
    "message is deflated afresh, so the server compresses it once for every connection.",
    "",
  );
  const extensions = negotiated.extensions;
  const minSize = serverCompression.settings?.min_size;
  if (extensions === undefined) lines.push("This lane has not opened yet.");
  else if (!/permessage-deflate/.test(extensions)) lines.push("This lane negotiated no extension: its frames go as \"before\".");
  else if (minSize && bytes.length < minSize) lines.push(`This lane negotiated deflate, but a ${bytes.length}-byte payload is under the server's ${minSize} B minimum: it goes as "before" (RSV1 clear). Raise the payload to see deflate at work.`);
  else lines.push(`This lane negotiated "${extensions}": its frames go as "after".`);
  lines.push("(Deflated by this browser; the server's compressor may choose other bits of the same form: its real counts are the lane's bytes / message.)");
  return lines.join("\n");
}

/**
 * `payload` deflated as RFC 7692 sends it: one deflate block, then a sync flush (an
 * empty stored block) whose last 4 bytes are dropped. CompressionStream ends its
 * output with a final block instead, so its block is marked non-final and the flush's
 * 3 header bits go after it: in the last byte's padding, or in one more zero byte.
 * Which of the two is right is told by inflating each; null where it cannot be done.
 */
async function deflateForWebSocket(payload) {
  if (typeof CompressionStream === "undefined") return null;
  const deflated = await pipe(payload, new CompressionStream("deflate-raw"));
  deflated[0] &= 0xfe; // BFINAL off: more follows
  for (const candidate of [deflated, concat(deflated, [0])]) {
    const inflated = await pipe(concat(candidate, TAIL, END), new DecompressionStream("deflate-raw")).catch(() => null);
    if (inflated && equal(inflated, payload)) return candidate;
  }
  return null; // more than one block (a payload of many KiB): not shown
}

async function pipe(bytes, transform) {
  return new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(transform)).arrayBuffer());
}

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A server frame's header (RFC 6455 §5.2), annotated: the first byte's bits, then the length. */
function header(length, compressed, binary) {
  const first = 0x80 | (compressed ? 0x40 : 0) | (binary ? 2 : 1);
  const [size, bytes] = length < 126 ? ["7-bit", [length]] : length < 65536 ? ["126, then 16-bit", [126, length >> 8, length & 0xff]] : ["127, then 64-bit", [127, 0, 0, 0, 0, ...[24, 16, 8, 0].map((s) => (length >>> s) & 0xff)]];
  return [
    `${hex([first]).padEnd(12)} ${first.toString(2)}: FIN 1 · RSV1 ${compressed ? 1 : 0}${compressed ? " (compressed)" : ""} · RSV2 0 · RSV3 0 · opcode ${binary ? 2 : 1}`,
    `${hex(bytes).padEnd(12)} length ${length} (${size}); no mask: server frames are not masked`,
  ];
}

const frameSize = (payload) => payload + (payload < 126 ? 2 : payload < 65536 ? 4 : 10);
const percent = (after, before) => `${after <= before ? "−" : "+"}${Math.abs(Math.round((100 * (before - after)) / before))}%`;
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
/** The first and last bytes of a long run, in hex. */
const hexRun = (bytes, each) => (bytes.length <= 2 * each ? hex(bytes) : `${hex(bytes.subarray(0, each))} … ${hex(bytes.subarray(bytes.length - 4))}`);

/** The latest message in both encodings, with sizes, the MessagePack bytes annotated. */
function compareEncodings(latest) {
  const { message, raw } = latest;
  const fromServer = raw instanceof ArrayBuffer;
  const packed = fromServer ? new Uint8Array(raw) : msgpack.encode(message);
  const json = typeof raw === "string" ? raw : jsonText(message);
  const jsonBytes = new TextEncoder().encode(json).length;
  return [
    `JSON, ${jsonBytes} bytes${typeof raw === "string" ? " (as the server sent it)" : " (as JSON.stringify writes it)"}:`,
    json.length > 240 ? json.slice(0, 240) + "…" : json,
    "",
    `MessagePack, ${packed.length} bytes (${percent(packed.length, jsonBytes)})${fromServer ? " as the server sent it" : ", as this page's encoder writes it"}:`,
    ...annotate(packed),
  ].join("\n");
}

/** MessagePack bytes, one value a line: its bytes in hex and what they mean (at most `limit` lines). */
function annotate(bytes, limit = 24) {
  const lines = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const line = (start, depth, what) => {
    const run = bytes.subarray(start, at);
    const shown = run.length > 9 ? `${hex(run.subarray(0, 8))} …` : hex(run);
    if (lines.length < limit) lines.push(`${"  ".repeat(depth)}${shown.padEnd(30 - 2 * depth)} ${what}`);
  };
  const length = (n) => (n === 1 ? view.getUint8(at) : n === 2 ? view.getUint16(at) : view.getUint32(at));
  const walk = (depth) => {
    if (at >= bytes.length) return;
    const start = at;
    const type = bytes[at++];
    const sized = (n, kind) => {
      const count = length(n);
      at += n;
      return [count, `${kind}${8 * n}`];
    };
    let [count, kind] = [0, ""];
    if (type < 0x80 || type >= 0xe0) return line(start, depth, `${type < 0x80 ? type : type - 256}  (fixint)`);
    if ((type & 0xe0) === 0xa0 || (type >= 0xd9 && type <= 0xdb)) {
      [count, kind] = type < 0xc0 ? [type & 0x1f, "fixstr"] : sized(1 << (type - 0xd9), "str");
      const text = new TextDecoder().decode(bytes.subarray(at, at + count));
      at += count;
      return line(start, depth, `${JSON.stringify(text.length > 24 ? text.slice(0, 24) + "…" : text)}  (${kind}, ${count} byte${count === 1 ? "" : "s"})`);
    }
    const container = type < 0x90 ? [type & 0x0f, "fixmap"] : type < 0xa0 ? [type & 0x0f, "fixarray"] : type === 0xde || type === 0xdf ? sized(type === 0xde ? 2 : 4, "map") : type === 0xdc || type === 0xdd ? sized(type === 0xdc ? 2 : 4, "array") : null;
    if (container) {
      [count, kind] = container;
      const isMap = kind.includes("map");
      line(start, depth, `${kind} of ${count} ${isMap ? "entries" : "items"}`);
      for (let i = 0; i < (isMap ? 2 * count : count); i++) walk(depth + 1);
      return;
    }
    // A scalar: as many bytes as its type says, read by the client's decoder.
    const widths = { 0xc0: 0, 0xc2: 0, 0xc3: 0, 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 };
    const names = { 0xc0: "nil", 0xc2: "false", 0xc3: "true", 0xca: "float32", 0xcb: "float64", 0xcc: "uint8", 0xcd: "uint16", 0xce: "uint32", 0xcf: "uint64", 0xd0: "int8", 0xd1: "int16", 0xd2: "int32", 0xd3: "int64" };
    if (!(type in widths)) return line(start, depth, `type ${type.toString(16)} (bin or ext: not sent by the server)`), (at = bytes.length);
    at += widths[type];
    const value = widths[type] ? msgpack.decode(bytes.subarray(start, at)) : "";
    line(start, depth, `${value === "" ? "" : String(value) + "  "}(${names[type]})`);
  };
  walk(0);
  if (lines.length >= limit) lines.push(`… ${bytes.length} bytes in all`);
  return lines;
}
