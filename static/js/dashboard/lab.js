// The network lab: the server puts this page's own connections (and nobody
// else's) behind a proxy that refuses WebSocket upgrades or swallows their
// frames, a proxy that buffers event streams, a firewall that drops UDP (no
// WebTransport), or a long link
// (`/api/inspect/{id}/impair`). Each change cuts the page's connections, so
// that every lane comes back under the new conditions and shows what happens.
import { $, authHeaders, clientId, href, notice, post } from "./page.js";
import { record } from "./timeline.js";

/** This page's network, as the server keeps it. */
export const network = { websocket: "ok", sse: "ok", webtransport: "ok", latency_ms: 0 };

/** The presets, named after what people meet; each changes only what it names. */
const PRESETS = {
  // A corporate network: the proxy strips Upgrade, the firewall drops UDP.
  proxy: { websocket: "refuse", webtransport: "blocked" },
  antivirus: { sse: "buffer" },
  satellite: { latency_ms: 600 },
  normal: { websocket: "ok", sse: "ok", webtransport: "ok", latency_ms: 0 },
};

/** The network in a few words ("UDP blocked · WebSocket refused · SSE buffered · +600 ms"). */
export function describe(n = network) {
  const parts = [];
  if (n.webtransport === "blocked") parts.push("UDP blocked");
  if (n.websocket === "refuse") parts.push("WebSocket refused");
  if (n.websocket === "swallow") parts.push("WebSocket swallowed");
  if (n.sse === "buffer") parts.push("SSE buffered");
  if (n.latency_ms > 0) parts.push(`+${n.latency_ms} ms`);
  return parts.length ? parts.join(" · ") : "normal network";
}

/** Why a raw lane's transport fails under the lab, in place of the browser's guess ("" when the lab is not the cause). */
export function labReason(lane) {
  if (lane === "websocket" && network.websocket === "refuse") return "closed 1006: the lab's proxy strips Upgrade, so /ws saw a plain GET (426)";
  if (lane === "websocket" && network.websocket === "swallow") return "upgraded (101), then silence for 4 s: the lab's relay passes no frame";
  if (lane === "webtransport" && network.webtransport === "blocked") return "no answer over UDP: the lab's firewall drops this page's QUIC packets (silence, not an error)";
  if (lane === "sse" && network.sse === "buffer") return "stream open (200), no event for 4 s: the lab's proxy holds it until 64 KiB or 30 s";
  return "";
}

/** Changes this page's network; the server answers with the whole of it. */
export async function impair(change) {
  try {
    Object.assign(network, await post(`/api/inspect/${clientId}/impair`, JSON.stringify(change)));
    record("lab", "lab", describe());
    notice(`network: ${describe()}; this page's connections were cut and come back under it`);
  } catch (error) {
    notice(`network not changed: ${error.message}`);
  }
  show();
}

/** The probe interval the auto lane's client is given, in ms. */
export const probeInterval = () => Math.max(1, Number($("#probe-interval").value) || 10) * 1000;

/** Wires the switches and presets; `onProbeInterval(ms)` hears the probe interval change. */
export async function bindLab(onProbeInterval) {
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => impair(PRESETS[button.dataset.preset]));
  }
  $("#lab-websocket").addEventListener("change", (e) => impair({ websocket: e.target.value }));
  $("#lab-sse").addEventListener("change", (e) => impair({ sse: e.target.value }));
  $("#lab-webtransport").addEventListener("change", (e) => impair({ webtransport: e.target.value }));
  $("#lab-latency").addEventListener("change", (e) => impair({ latency_ms: Math.min(5000, Math.max(0, Math.round(Number(e.target.value) || 0))) }));
  $("#probe-interval").addEventListener("change", () => onProbeInterval(probeInterval()));
  // A lab prepared for this page before it opened (`/?client=ID`) is already in force.
  const response = await fetch(href(`/api/inspect/${clientId}/impair`), { cache: "no-store", headers: authHeaders() }).catch(() => null);
  if (response?.ok) Object.assign(network, await response.json());
  show();
}

function show() {
  $("#lab-websocket").value = network.websocket;
  $("#lab-sse").value = network.sse;
  $("#lab-webtransport").value = network.webtransport || "ok";
  $("#lab-latency").value = network.latency_ms;
  $("#lab-state").textContent = describe();
  $("#lab-state").dataset.impaired = describe() !== "normal network";
}
