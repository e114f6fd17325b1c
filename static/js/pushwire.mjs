// The pushwire client as an ES module: `import { connect } from "/static/js/pushwire.mjs"`.
// The client itself is a plain script (so that a <script> tag can load it too).
// `util` holds the helpers the dashboard shares with it (sleep, backoff, cursors, poll answers);
// `msgpack` the client's MessagePack codec ({encode, decode, SUBPROTOCOL}).
import "./pushwire.js";

const { connect: connectTo, util, msgpack } = globalThis.pushwire;

/** The server this module was loaded from (under its path prefix, if any): the default `url`. */
const server = util.serverRoot(import.meta.url);

/** As pushwire.js's `connect`, with `url` defaulting to this module's server. */
export const connect = (options = {}) => connectTo({ ...options, url: options.url ?? server });

export { msgpack, util };
