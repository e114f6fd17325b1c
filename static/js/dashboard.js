// The pushwire dashboard: the same channel over the four transports at once,
// with the browser's own WebSocket, EventSource and fetch, and a fifth "auto"
// lane through the pushwire.js client, which negotiates its own transport.
// Plain ES modules, no third-party code, no build step. This entry point only
// wires the parts in dashboard/ together and sets the clocks ticking:
//   page.js      the server's config and this page's client id
//   clock.js     the server's clock offset, that latencies are measured with
//   lanes.js     the lane model: one transport's counters and figures
//   runners.js   what feeds the lanes: raw WebSocket, EventSource, fetch; the client
//   wire.js      the "what went over the wire" panel and the byte counts
//   charts.js    the two canvas charts
//   controls.js  the forms and buttons
// `window.pushwireDashboard.summary()` exposes the figures (the end-to-end test reads them).

import { drawCharts } from "./dashboard/charts.js";
import { measureClock } from "./dashboard/clock.js";
import { bindControls, notice } from "./dashboard/controls.js";
import { allLanes, lanes } from "./dashboard/lanes.js";
import { clientId, config } from "./dashboard/page.js";
import { startAll } from "./dashboard/runners.js";
import { bindTabs, refreshInspection } from "./dashboard/wire.js";

bindControls();
bindTabs();
window.pushwireDashboard = {
  clientId,
  summary: () => Object.fromEntries(allLanes.map((lane) => [lane.id, lane.summary()])),
};
await measureClock().catch(() => notice("could not read the server clock: latencies assume synchronised clocks"));
startAll(config.channel);
setInterval(() => allLanes.forEach((lane) => lane.render()), 250);
setInterval(() => drawCharts(lanes), 1000);
setInterval(() => refreshInspection().catch(() => {}), 1000);
setInterval(() => measureClock().catch(() => {}), 30_000);
