// What every part of the dashboard shares: the server's settings and this page's identity.

/** From the template: `channel` (the demo channel) and `lanes` ([{id, title, name, path, color}]). */
export const config = JSON.parse(document.getElementById("pushwire-config").textContent);

/**
 * The server's root as this browser reaches it: the dashboard is served there, so it is
 * where the page was loaded from, with whatever path prefix (`--base-path`, or a
 * gateway's) in front of it. Every request the page makes goes under it.
 */
const root = new URL(".", location.href);

/** The URL of a server route (`/api/time`, a lane's `path`) under the root. */
export const href = (route) => new URL(route.replace(/^\//, ""), root).href;

/** The same for a WebSocket: `ws:` or `wss:` as the page is `http:` or `https:`. */
export const wsHref = (route) => href(route).replace(/^http/, "ws");

/** Tags this page's connections (`client=`), so that /api/inspect reports and drops only them. */
export const clientId = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");

/** The auto lane's own tag: its bytes are counted apart from the four raw lanes'. */
export const autoId = `${clientId}auto`;

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * The page's own `?access_token=` (when the server checks tokens), passed on to
 * every request: as a query parameter where the browser cannot set a header
 * (WebSocket, EventSource) and on the polls, as `Authorization` on the rest.
 */
export const accessToken = new URLSearchParams(location.search).get("access_token");

/** `&access_token=…` for a query string, or nothing. */
export const tokenParam = () => (accessToken ? `&access_token=${encodeURIComponent(accessToken)}` : "");

/** Headers for fetch: `Authorization: Bearer …` when the page has a token. */
export const authHeaders = (headers = {}) => (accessToken ? { ...headers, authorization: `Bearer ${accessToken}` } : headers);
