// What every part of the dashboard shares: the server's settings and this page's identity.

/** From the template: `channel` (the demo channel) and `lanes` ([{id, title, name, path, color}]). */
export const config = JSON.parse(document.getElementById("pushwire-config").textContent);

/** Tags this page's connections (`client=`), so that /api/inspect reports and drops only them. */
export const clientId = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");

/** The auto lane's own tag: its bytes are counted apart from the four raw lanes'. */
export const autoId = `${clientId}auto`;

export const $ = (selector, root = document) => root.querySelector(selector);
