// The legend: the viewed session's labels in the order the server gave them, each with the fill,
// glyph and names the timeline and summary draw it with.

import { info } from "./labels.js";
import { escapeHtml } from "./html.js";

let drawn = "";

export function renderLegend(list, labels) {
  const key = JSON.stringify(labels);
  if (key === drawn) return; // unchanged: most renders are a status tick
  drawn = key;
  list.innerHTML = labels.map((l) => {
    const i = info(l);
    return `<li data-label="${escapeHtml(l)}"><svg width="18" height="14" aria-hidden="true"><rect width="18" height="14" rx="2" fill="${i.fill}"/></svg>` +
      `<span class="glyph" aria-hidden="true">${i.glyph}</span> ${escapeHtml(i.ko)} <span class="en">${escapeHtml(i.en)}</span></li>`;
  }).join("");
}
