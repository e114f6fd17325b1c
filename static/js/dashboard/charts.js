// The two charts, drawn on canvas (no chart library): latency over the last
// minute (live deliveries only), and bytes on the wire per delivered message.

/** Draws both charts for `lanes`, each in its own colour. */
export function drawCharts(lanes) {
  drawLatency(document.getElementById("latency-chart"), lanes);
  drawBytes(document.getElementById("bytes-chart"), lanes);
}

/** The median latency of each second, for the last 60 s. */
function drawLatency(canvas, lanes) {
  const g = canvas.getContext("2d");
  const [w, h, pad] = [canvas.width, canvas.height, 40];
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  const series = lanes.map((lane) => {
    const buckets = new Map();
    for (const s of lane.samples) {
      const k = Math.floor((now - s.t) / 1000);
      if (k < 60) (buckets.get(k) || buckets.set(k, []).get(k)).push(s.latency);
    }
    const points = [...buckets].map(([k, v]) => [k, v.sort((a, b) => a - b)[Math.floor(v.length / 2)]]).sort((a, b) => b[0] - a[0]);
    return { lane, points };
  });
  // A log scale: WebSocket's fractions of a millisecond and short polling's
  // hundreds fit on one chart.
  const top = Math.max(10, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const [lo, hi] = [-1, Math.ceil(Math.log10(top))];
  const yOf = (ms) => h - pad - ((h - 2 * pad) * (Math.log10(Math.max(ms, 0.1)) - lo)) / (hi - lo);
  g.strokeStyle = "#c9ced6";
  g.fillStyle = "#56606b";
  g.font = "14px system-ui";
  g.lineWidth = 1;
  for (let e = lo; e <= hi; e++) {
    const y = yOf(10 ** e);
    g.beginPath();
    g.moveTo(pad, y);
    g.lineTo(w - 10, y);
    g.stroke();
    g.fillText(e < 0 ? "0.1" : String(10 ** e), 4, y + 4);
  }
  g.fillText("60 s ago", pad, h - 12);
  g.fillText("now", w - 40, h - 12);
  for (const { lane, points } of series) {
    g.strokeStyle = lane.color;
    g.lineWidth = 3;
    g.beginPath();
    points.forEach(([k, v], i) => {
      const x = w - 10 - ((w - 10 - pad) * k) / 60;
      const y = yOf(v);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

/** One bar per lane: bytes sent and received per message on the wire, over a pale one for the same before compression. */
function drawBytes(canvas, lanes) {
  const g = canvas.getContext("2d");
  const [w, h] = [canvas.width, canvas.height];
  g.clearRect(0, 0, w, h);
  const values = lanes.map((lane) => [lane, lane.bytesPerMessage(), lane.bytesPerMessage(true)]);
  const max = Math.max(1, ...values.flatMap(([, v, u]) => [v || 0, u || 0]));
  const row = h / values.length;
  const scale = (v) => (v ? ((w - 300) * v) / max : 0);
  g.font = "16px system-ui";
  values.forEach(([lane, v, before], i) => {
    const y = i * row + 8;
    g.fillStyle = "#1b1f24";
    g.fillText(lane.title, 8, y + row / 2);
    g.fillStyle = lane.color;
    g.globalAlpha = 0.25;
    g.fillRect(170, y + 4, scale(before), row - 20);
    g.globalAlpha = 1;
    g.fillRect(170, y + 4, scale(v), row - 20);
    g.fillStyle = "#1b1f24";
    const saved = v && before > v + 0.5 ? ` of ${Math.round(before)}` : "";
    g.fillText(v ? `${Math.round(v)} B${saved}` : "–", 178 + Math.max(scale(v), scale(before)), y + row / 2);
  });
}
