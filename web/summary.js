// The session at a glance: each emotion's share of the speaking time, and how the shares moved
// over the session (thirds while it is short, then 5-, 10- or 15-minute bins, at most 12). Shares
// are weighted by utterance length so one long sad story outweighs a short "yes". With more than
// one speaker, each speaker's shares follow: the client's sadness apart from the counselor's calm.

import { clock, info, labelName, labelsOf, pct } from "./labels.js";
import { escapeHtml } from "./html.js";
import { shownSpeaker, speakerColour, speakerName } from "./speakers.js";

const BIN_SIZES_S = [300, 600, 900, 1800];
const MAX_BINS = 12;
const THIRDS_UNTIL_S = 900;

/**
 * Seconds of speech per label (a Map, so any label the feed sends is a plain key) for utterances
 * whose midpoint lies in [from, to). `total` counts a label outside `labels` too.
 */
export function shares(utterances, labels, from = 0, to = Infinity) {
  const seconds = new Map(labels.map((l) => [l, 0]));
  let count = 0;
  for (const u of utterances) {
    const mid = (u.start + u.end) / 2;
    if (mid < from || mid >= to) continue;
    seconds.set(u.emotion.label, (seconds.get(u.emotion.label) ?? 0) + Math.max(0, u.end - u.start));
    count += 1;
  }
  const total = [...seconds.values()].reduce((a, b) => a + b, 0);
  return { seconds, total, count };
}

export function bins(duration) {
  if (duration <= 0) return [];
  if (duration < THIRDS_UNTIL_S) {
    const third = duration / 3;
    return [0, 1, 2].map((k) => ({ from: k * third, to: k === 2 ? Infinity : (k + 1) * third, name: ["처음 start", "중간 middle", "끝 end"][k] }));
  }
  const size = BIN_SIZES_S.find((s) => duration / s <= MAX_BINS) ?? BIN_SIZES_S.at(-1);
  const n = Math.ceil(duration / size);
  return Array.from({ length: n }, (_, k) => ({ from: k * size, to: k === n - 1 ? Infinity : (k + 1) * size, name: clock(k * size) }));
}

function shareRows(all, labels) {
  return labels.map((l) => {
    const i = info(l);
    const p = all.total ? all.seconds.get(l) / all.total : 0;
    return `<div class="share" data-label="${escapeHtml(l)}"><span class="name"><span class="glyph">${i.glyph}</span> ${escapeHtml(labelName(l))}</span>` +
      `<span class="barwrap"><svg class="bar" width="100%" height="14" aria-hidden="true"><rect width="${(p * 100).toFixed(1)}%" height="14" rx="2" fill="${i.fill}"/></svg></span>` +
      `<span class="num">${pct(p)}</span></div>`;
  }).join("");
}

function binChart(session, list, labels) {
  const parts = bins(session.duration);
  if (!parts.length) return "";
  const W = 100 / parts.length;
  const cols = parts.map((b, k) => {
    const s = shares(list, labels, b.from, b.to);
    const x = k * W;
    const title = escapeHtml(`${b.name}: ` + (s.total ? labels.map((l) => `${labelName(l)} ${pct(s.seconds.get(l) / s.total)}`).join(", ") : "no speech"));
    let y = 100;
    const segs = s.total ? labels.map((l) => {
      const h = (100 * s.seconds.get(l)) / s.total;
      y -= h;
      return h > 0 ? `<rect x="${x + 0.6}%" y="${y}%" width="${W - 1.2}%" height="${h}%" fill="${info(l).fill}"><title>${title}</title></rect>` +
        (h >= 16 && parts.length <= 8 ? `<text x="${x + W / 2}%" y="${y + h / 2}%" dy="0.35em" text-anchor="middle" fill="${info(l).ink}">${info(l).glyph}</text>` : "") : "";
    }).join("") : `<rect class="empty" x="${x + 0.6}%" y="0" width="${W - 1.2}%" height="100%"><title>${title}</title></rect>`;
    return segs;
  }).join("");
  const every = parts.length > 6 ? 2 : 1; // keep the time labels from running into each other
  const names = parts.map((b, k) => `<span>${k % every ? "" : b.name}</span>`).join("");
  return `<h3>시간에 따른 변화 <span class="en">Over the session</span></h3>` +
    `<svg class="bins" width="100%" height="110" role="img" aria-label="Share of each emotion per part of the session">${cols}</svg>` +
    `<div class="bin-names" style="grid-template-columns: repeat(${parts.length}, 1fr)">${names}</div>`;
}

/** Each shown speaker's utterances, in order of their ids; [] when the feed names no speaker. */
export function bySpeaker(session, list) {
  const groups = new Map();
  for (const u of list) {
    const sp = shownSpeaker(session, u);
    if (!sp) continue;
    if (!groups.has(sp.id)) groups.set(sp.id, { speaker: sp, utterances: [] });
    groups.get(sp.id).utterances.push(u);
  }
  return [...groups.values()].sort((a, b) => a.speaker.id.localeCompare(b.speaker.id, undefined, { numeric: true }));
}

function speakerBlocks(session, list, labels) {
  const groups = bySpeaker(session, list);
  if (groups.length < 2) return "";
  return `<h3>화자별 <span class="en">Per speaker</span></h3>` + groups.map(({ speaker, utterances }) => {
    const s = shares(utterances, labels);
    return `<div class="per-speaker" data-speaker="${escapeHtml(speaker.id)}">` +
      `<p class="who"><span class="swatch" style="background:${speakerColour(speaker.id)}"></span>${escapeHtml(speakerName(speaker))}` +
      ` <span class="sub">${s.count} utt. · ${clock(s.total)}</span></p>${shareRows(s, labels)}</div>`;
  }).join("");
}

export function renderSummary(container, spanNote, session) {
  const list = session ? session.list() : [];
  const labels = labelsOf(session);
  const all = shares(list, labels);
  spanNote.textContent = session ? `${list.length} utterances · ${clock(all.total)} of speech` : "";
  container.innerHTML = `<p class="hint">발화 시간 비율 Share of speaking time</p>${shareRows(all, labels)}` +
    (session ? speakerBlocks(session, list, labels) + binChart(session, list, labels) : "");
}
