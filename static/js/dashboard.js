// The pushwire dashboard: the same channel over the five transports at once,
// with the browser's own WebTransport, WebSocket, EventSource and fetch, and an
// "auto" lane through the pushwire.js client, which negotiates its own transport.
// Plain ES modules, no third-party code, no build step. This entry point only
// wires the parts in dashboard/ together and sets the clocks ticking:
//   page.js      the server's config and this page's client id
//   clock.js     the server's clock offset, that latencies are measured with
//   lanes.js     the lane model: one transport's counters and figures
//   runners.js   what feeds the lanes: raw WebTransport, WebSocket, EventSource, fetch; the client
//   wire.js      the "what went over the wire" panel and the byte counts
//   encoding.js  one frame before and after deflate; the latest message in JSON and MessagePack
//   decode.js    what decoding a message costs this browser: JSON.parse against MessagePack
//   charts.js    the two canvas charts
//   controls.js  the forms and buttons
//   lab.js       the network lab: this page's connections behind a bad proxy or a long link
//   timeline.js  what happened to each lane's connection, on the latency chart's time axis
// `window.pushwireDashboard` exposes the figures, the timeline and the network
// (the end-to-end tests read them).

import { drawCharts } from "./dashboard/charts.js";
import { measureClock } from "./dashboard/clock.js";
import { bindControls } from "./dashboard/controls.js";
import { decodeCost, measureDecodeCost } from "./dashboard/decode.js";
import { readServerCompression, refreshEncoding } from "./dashboard/encoding.js";
import { bindLab, network } from "./dashboard/lab.js";
import { allLanes, lanes } from "./dashboard/lanes.js";
import { clientId, config, notice } from "./dashboard/page.js";
import { choice, setProbeInterval, startAll } from "./dashboard/runners.js";
import { drawTimeline, timelineEvents } from "./dashboard/timeline.js";
import { bindTabs, refreshInspection } from "./dashboard/wire.js";

bindControls();
bindTabs();
window.pushwireDashboard = {
  clientId,
  summary: () => Object.fromEntries(allLanes.map((lane) => [lane.id, lane.summary()])),
  timeline: timelineEvents,
  network: () => ({ ...network }),
  choice,
  decodeCost: () => decodeCost.results,
};
await bindLab(setProbeInterval);
await measureClock().catch(() => notice("could not read the server clock: latencies assume synchronised clocks"));
startAll(config.channel);
readServerCompression().catch(() => {});
// One row per lane in the timeline, with the lanes' colours and short names.
const SHORT = { webtransport: "WT", websocket: "WS", sse: "SSE", "long-poll": "LP", poll: "poll" };
const rows = [...lanes.map((l) => ({ id: l.id, short: SHORT[l.id] || l.id, color: l.color })), { id: "auto", short: "auto", color: "#3d3d3d" }];
setInterval(() => allLanes.forEach((lane) => lane.render()), 250);
setInterval(() => {
  drawCharts(lanes);
  drawTimeline(document.getElementById("timeline-chart"), rows);
}, 1000);
setInterval(() => refreshInspection().catch(() => {}), 1000);
setInterval(() => refreshEncoding().catch((error) => console.error(error)), 1000);
// Once the lanes run, and again on demand: it holds the page for a moment.
setTimeout(() => measureDecodeCost().catch((error) => notice(`decode cost not measured: ${error.message}`)), 3000);
document.getElementById("decode-again").addEventListener("click", () => measureDecodeCost().catch((error) => notice(error.message)));
setInterval(() => measureClock().catch(() => {}), 30_000);
