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

/**
 * Tags this page's connections (`client=`), so that /api/inspect reports, drops and
 * impairs only them: the id the page was opened with (`/?client=ID`, so that a lab can
 * be prepared for it), or a random one.
 */
export const clientId =
  config.clientId || Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");

/** Where the server counts the auto lane's bytes (it tags itself `client=ID&lane=auto`), apart from the four raw lanes'. */
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

/** Says what a control did, or why it did nothing. */
export const notice = (text) => ($("#notice").textContent = text);

/** POSTs `body` as JSON to a server route; an error answer (API.md's `{error: {code, message}}`) throws. */
export async function post(route, body) {
  const response = await fetch(href(route), { method: "POST", headers: authHeaders({ "content-type": "application/json" }), body });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ? `${answer.error.code}: ${answer.error.message}` : `HTTP ${response.status}`);
  return answer;
}
