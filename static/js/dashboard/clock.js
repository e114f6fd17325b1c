// The server's clock as seen from this page. A message's `ts` is server time,
// so a latency measured against the local clock needs the offset between them.
import { $, href } from "./page.js";

const clock = { offsetUs: 0, rttMs: null };

/** offset = server time - local time, from the quickest of a few round trips (the least skewed). */
export async function measureClock() {
  let best = null;
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now() * 1000;
    const response = await fetch(href("/api/time"), { cache: "no-store" });
    const { now } = await response.json();
    const t1 = Date.now() * 1000;
    if (!best || t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: now - (t0 + t1) / 2 };
  }
  clock.offsetUs = best.offset;
  clock.rttMs = best.rtt / 1000;
  $("#clock").textContent = `clock offset ${(clock.offsetUs / 1000).toFixed(1)} ms (±${(clock.rttMs / 2).toFixed(1)})`;
}

/** A moment of this clock (ms since the epoch, as `Date.now()`) on the server's clock, in microseconds, like a message's `ts`. */
export const serverUs = (localMs) => localMs * 1000 + clock.offsetUs;

/** Now on the server's clock. */
export const serverNowUs = () => serverUs(Date.now());
