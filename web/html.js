// The one escaping rule for any value from the feed, the server or the user that is written into
// markup: HTML text, an attribute in either quote, or XML (EmotionML). Escaping all five
// characters everywhere means no call site has to know which of those contexts it writes into.
// `&#39;` rather than `&apos;`: a numeric reference reads the same in HTML and in XML.

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
}
