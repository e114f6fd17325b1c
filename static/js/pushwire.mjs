// The pushwire client as an ES module: `import { connect } from "/static/js/pushwire.mjs"`.
// The client itself is a plain script (so that a <script> tag can load it too).
import "./pushwire.js";

export const { connect } = globalThis.pushwire;
