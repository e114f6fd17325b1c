// The timeline under the lanes: what happened to each lane's connection
// (connects, closes with their codes, fallbacks, upgrades, resets, probes),
// one row per lane, on the latency chart's time axis (the last 60 s).

const SPAN_MS = 60_000;
const events = []; // {t, lane, kind, label}

/** The look of each kind of event: its colour, marker and whether its label is drawn. */
const KINDS = {
  connect: { color: "#1a7f37", marker: "dot" },
  close: { color: "#c62828", marker: "cross", label: true },
  fallback: { color: "#d55e00", marker: "down", label: true },
  upgrade: { color: "#0072b2", marker: "up", label: true },
  reset: { color: "#8e44ad", marker: "diamond", label: true },
  probe: { color: "#8a94a0", marker: "ring" },
  lab: { color: "#3d3d3d", marker: "bar", label: true },
};

/** Notes an event of `kind` on lane `lane` (an id, or "lab" for the network's changes) now. */
export function record(lane, kind, label = "") {
  events.push({ t: Date.now(), lane, kind, label });
  while (events.length && events[0].t < Date.now() - SPAN_MS) events.shift();
}

/** The events of the last minute, oldest first (the end-to-end test reads them). */
export const timelineEvents = () => events.filter((e) => e.t >= Date.now() - SPAN_MS).map((e) => ({ ...e }));

/** Draws one row per lane of `rows` ({id, short, color}); the x axis is the latency chart's. */
export function drawTimeline(canvas, rows) {
  const g = canvas.getContext("2d");
  const [w, h, pad] = [canvas.width, canvas.height, 40];
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  const rowH = (h - 22) / rows.length;
  const xOf = (t) => w - 10 - ((w - 10 - pad) * (now - t)) / SPAN_MS;
  g.font = "12px system-ui";
  rows.forEach((row, i) => {
    const y = i * rowH + rowH / 2;
    g.fillStyle = row.color;
    g.fillText(row.short, 2, y + 4);
    g.strokeStyle = "#e3e7ec";
    g.beginPath();
    g.moveTo(pad, y);
    g.lineTo(w - 10, y);
    g.stroke();
  });
  // Newest first, so that where labels would collide the latest keeps its own.
  const shown = events.filter((e) => e.t >= now - SPAN_MS).reverse();
  const taken = new Map(); // row -> [left, right] spans of drawn labels
  const label = (row, text, x, y, color) => {
    const width = g.measureText(text).width;
    // Right of the marker, or left of it where the axis ends.
    const left = x + 6 + width <= w ? x + 6 : x - 6 - width;
    const spans = taken.get(row) || taken.set(row, []).get(row);
    if (spans.some(([a, b]) => left < b + 4 && left + width > a - 4)) return;
    spans.push([left, left + width]);
    g.fillStyle = color;
    g.fillText(text, left, y);
  };
  // The lab's changes cross every row: they are the cause of what follows.
  for (const e of shown.filter((e) => e.kind === "lab")) {
    const x = xOf(e.t);
    g.strokeStyle = KINDS.lab.color;
    g.setLineDash([4, 3]);
    g.beginPath();
    g.moveTo(x, 0);
    g.lineTo(x, h - 22);
    g.stroke();
    g.setLineDash([]);
    label("lab", e.label, x - 6, h - 6, KINDS.lab.color);
  }
  for (const e of shown) {
    const row = rows.findIndex((r) => r.id === e.lane);
    if (row < 0) continue;
    const kind = KINDS[e.kind];
    const [x, y] = [xOf(e.t), row * rowH + rowH / 2];
    marker(g, kind, x, y);
    if (kind.label && e.label) label(row, e.label, x, y - 5, kind.color);
  }
}

function marker(g, { color, marker }, x, y) {
  g.fillStyle = g.strokeStyle = color;
  g.lineWidth = 2;
  g.beginPath();
  if (marker === "dot") g.arc(x, y, 4, 0, 2 * Math.PI);
  else if (marker === "ring") g.arc(x, y, 3, 0, 2 * Math.PI);
  else if (marker === "cross") g.moveTo(x - 4, y - 4), g.lineTo(x + 4, y + 4), g.moveTo(x + 4, y - 4), g.lineTo(x - 4, y + 4);
  else if (marker === "down") g.moveTo(x - 5, y - 4), g.lineTo(x + 5, y - 4), g.lineTo(x, y + 5), g.closePath();
  else if (marker === "up") g.moveTo(x - 5, y + 4), g.lineTo(x + 5, y + 4), g.lineTo(x, y - 5), g.closePath();
  else if (marker === "diamond") g.moveTo(x, y - 5), g.lineTo(x + 5, y), g.lineTo(x, y + 5), g.lineTo(x - 5, y), g.closePath();
  if (marker === "ring" || marker === "cross") g.stroke();
  else g.fill();
  g.lineWidth = 1;
}
