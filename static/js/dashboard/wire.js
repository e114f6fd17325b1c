// The "what went over the wire" panel: what the server saw and sent on this
// page's connections (/api/inspect), and the bytes it counted per lane.
import { allLanes, auto, lanes } from "./lanes.js";
import { $, authHeaders, autoId, clientId, href } from "./page.js";

const byId = (id) => lanes.find((lane) => lane.id === id);

/** One tab per transport; the first one shows at start. */
export function bindTabs() {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.addEventListener("click", () => {
      document.querySelectorAll("[data-tab]").forEach((t) => t.setAttribute("aria-selected", t === tab));
      document.querySelectorAll("[data-panel]").forEach((p) => (p.hidden = p.dataset.panel !== tab.dataset.tab));
    });
  }
  document.querySelector("[data-tab]").click();
}

/** Reads the server's captures and byte counts for this page, and shows them. */
export async function refreshInspection() {
  // Messages received when the server's byte counts were read.
  const counted = Object.fromEntries(allLanes.map((lane) => [lane.id, lane.received]));
  const response = await fetch(href(`/api/inspect/${clientId}`), { cache: "no-store", headers: authHeaders() });
  if (!response.ok) return;
  const report = await response.json();
  for (const lane of lanes) lane.counted({ ...counts(report.transports[lane.name]), received: counted[lane.id] });
  const autoReport = await fetch(href(`/api/inspect/${autoId}`), { cache: "no-store", headers: authHeaders() }).then((r) => (r.ok ? r.json() : null));
  const head = (text) => text.split("\r\n\r\n")[0] + "\r\n\r\n";
  // EventSource shows no headers: an SSE lane's Content-Encoding is read from the response as sent.
  const contentEncoding = (response) => /\r\ncontent-encoding:\s*([^\r]*)/i.exec(head(response))?.[1] || "identity";
  if (autoReport) {
    // The client may have used several transports: its bytes are all of theirs.
    const all = Object.values(autoReport.transports).map(counts);
    const sum = (k) => all.reduce((n, lane) => n + lane[k], 0);
    auto.counted({ bytes_sent: sum("bytes_sent"), bytes_sent_uncompressed: sum("bytes_sent_uncompressed"), bytes_received: sum("bytes_received"), received: counted.auto });
    const sseResponse = autoReport.transports[byId("sse").name].response;
    if (auto.negotiated.transport === "sse" && sseResponse) auto.negotiated.contentEncoding = contentEncoding(sseResponse);
  }
  for (const lane of lanes) {
    const { request, response } = report.transports[lane.name];
    show(`${lane.id}-request`, request);
    // After the 101 a WebSocket's capture runs on into binary frames: the head only.
    show(`${lane.id}-response`, lane.id === "websocket" && response ? head(response) : response);
  }
  explainCertificate(byId("webtransport"));
  const [websocket, sse] = [byId("websocket"), byId("sse")];
  show("sse-event", report.transports[sse.name].last_event || rebuiltEvent(sse.lastEvent));
  const sseResponse = report.transports[sse.name].response;
  if (sseResponse && sse.negotiated.encoding) sse.negotiated.contentEncoding = contentEncoding(sseResponse);
  const { request, response: upgrade } = report.transports[websocket.name];
  await explainAccept(request, upgrade);
  explainFrame(websocket);
}

/** A lane's byte counts; a v1.1 server compresses nothing, so its bytes before compression are its bytes. */
const counts = ({ bytes_sent, bytes_received, bytes_sent_uncompressed = bytes_sent }) => ({ bytes_sent, bytes_sent_uncompressed, bytes_received });

/**
 * The latest SSE event as EventSource received it, in its wire form: a gzip'd stream's
 * capture holds compressed bytes, in which no event can be read.
 */
function rebuiltEvent(event) {
  if (!event) return "";
  const note = ": (rebuilt from what EventSource received: the stream is gzip'd, its bytes as sent are compressed)\n";
  return `${note}id: ${event.id}\nevent: ${event.type}\n${event.data.split("\n").map((line) => `data: ${line}\n`).join("")}\n`;
}

/** Shows raw HTTP with its line ends visible. */
function show(name, text) {
  if (text) $(`[data-raw="${name}"]`).textContent = text.replaceAll("\r\n", "↵\n");
}

/** Works out Sec-WebSocket-Accept from the request's key, as RFC 6455 does, next to what the server sent. */
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

/** How the page trusts the server's self-signed certificate: by its hash, as discovery gave it. */
function explainCertificate(lane) {
  const info = lane?.discovery;
  if (!info) return;
  const [first] = info.certificate_hashes;
  const lines = [`GET /api/webtransport  →  url ${info.url}`];
  if (first) {
    lines.push(
      `certificate_hashes[0]   ${first.algorithm} ${first.value}`,
      "",
      "new WebTransport(url, { serverCertificateHashes: [",
      `  { algorithm: "${first.algorithm}", value: Uint8Array(${info.hashes[0].value.length}) [${Array.from(info.hashes[0].value.slice(0, 6), (b) => "0x" + b.toString(16).padStart(2, "0")).join(", ")}, …] },`,
      "] })",
      "→ no CA check: the browser takes a certificate whose SHA-256 is listed,",
      "  valid 14 days at most (the server renews it, listing the next hash a day ahead)",
    );
    if (info.certificate_hashes.length > 1) lines.push(`(${info.certificate_hashes.length} hashes listed: a renewal is near)`);
  } else lines.push("certificate_hashes  []  (a certificate from --tls-cert: the browser checks it against its CAs, as for HTTPS)");
  $('[data-raw="webtransport-certificate"]').textContent = lines.join("\n");
}

/** The framing cost of the WebSocket lane's latest message (RFC 6455 header sizes), before any compression. */
function explainFrame(websocket) {
  const latest = websocket.latest;
  if (!latest) return;
  const binary = latest.raw instanceof ArrayBuffer;
  const n = binary ? latest.raw.byteLength : new TextEncoder().encode(latest.raw ?? "").length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  $('[data-raw="websocket-frame"]').textContent = [
    `${`payload (${binary ? "MessagePack" : "the message JSON"})`.padEnd(32)}${n} bytes`,
    `frame header, server → client   ${header} bytes (FIN+opcode, ${n < 126 ? "7-bit length" : n < 65536 ? "16-bit length" : "64-bit length"})`,
    `same frame, client → server     ${header + 4} bytes (adds the 4-byte mask)`,
    `on the wire                     ${n + header} bytes, ${((100 * header) / (n + header)).toFixed(1)}% overhead`,
    `(uncompressed; what permessage-deflate makes of it: "compression and encoding", below)`,
  ].join("\n");
}
