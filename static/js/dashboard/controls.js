// The controls: the demo publisher's settings, publishing, dropping this
// page's connections, switching channel, and the compression and encoding of
// this page's lanes. (The runners read the polling inputs themselves, before
// each request.)
import { allLanes } from "./lanes.js";
import { $, clientId, notice, post } from "./page.js";
import { currentChannel, restartAll, startAll } from "./runners.js";

export function bindControls() {
  $("#demo-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const rate = Number($("#demo-rate").value), payload = Number($("#demo-payload").value);
    try {
      const s = await post("/api/demo", JSON.stringify({ rate, payload }));
      notice(`demo: ${s.rate} msg/s, ${s.payload} bytes of padding on ${s.channel}`);
    } catch (error) {
      notice(`demo not changed: ${error.message}`);
    }
  });
  $("#publish-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("#publish-text").value.trim() || '{"text":"hello, class"}';
    let body = text;
    try {
      JSON.parse(text);
    } catch {
      body = JSON.stringify({ text }); // plain words become a JSON string message
    }
    try {
      const answer = await post(`/channels/${encodeURIComponent(currentChannel())}/messages`, body);
      notice(`published seq ${answer.seq} on ${answer.channel}`);
    } catch (error) {
      notice(`not published: ${error.message}`);
    }
  });
  $("#drop").addEventListener("click", async () => {
    try {
      // The page's drop covers its auto lane too.
      await post(`/api/inspect/${clientId}/drop`, "");
      notice("the server cut this page's connections: watch them reconnect and resume");
    } catch (error) {
      notice(`drop failed: ${error.message}`);
    }
  });
  for (const select of ["#compression", "#encoding"]) {
    $(select).addEventListener("change", () => {
      const choice = { compression: $("#compression").value === "on", encoding: $("#encoding").value };
      restartAll(choice);
      const said = `compression ${choice.compression ? "on" : "off"}, ${choice.encoding === "msgpack" ? "MessagePack" : "JSON"}`;
      notice(`this page's lanes reconnect with ${said}${choice.encoding === "msgpack" ? " (SSE stays JSON: it is a text protocol)" : ""}`);
    });
  }
  $("#channel").addEventListener("change", () => {
    const channel = $("#channel").value.trim();
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(channel)) return notice("a channel name is 1 to 64 of A-Z a-z 0-9 _ . -");
    for (const lane of allLanes) lane.clearFigures();
    startAll(channel);
    notice(`switched to ${channel}`);
  });
}
