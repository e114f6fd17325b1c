// The pushwire client as an ES module: `import { connect } from "/static/js/pushwire.mjs"`.
// The client itself is a plain script (so that a <script> tag can load it too).
// `util` holds the helpers the dashboard shares with it (sleep, backoff, cursors, poll answers).
import "./pushwire.js";

export const { connect, util } = globalThis.pushwire;
