// The session timeline in plain SVG: each utterance is a stacked column of its emotion
// probabilities over [start, end] (silence stays empty rather than being interpolated), above a
// band coloured and patterned by its label with the label's glyph. Elements are keyed by
// utterance id and updated in place, so keyboard focus and hover survive new messages.
// Keyboard: one utterance is in the tab order; arrows, Home and End move; Enter opens its row.

import { clock, confidence, info, labelName, labelsOf, patternDefs, pct } from "./labels.js";
import { breakdown, source } from "./describe.js";
import { escapeHtml } from "./html.js";
import { editsOf, shownSpeaker, speakerColour, speakerName } from "./speakers.js";

const NS = "http://www.w3.org/2000/svg";
const TOP = 8;
const PROB_H = 132;
const BAND_Y = TOP + PROB_H + 8;
const BAND_H = 30;
const SPEAKER_Y = BAND_Y + BAND_H + 4; // the speaker lane: who spoke, under what was felt
const SPEAKER_H = 14;
const AXIS_Y = SPEAKER_Y + SPEAKER_H + 6;
const HEIGHT = AXIS_Y + 22;
const PAD = 6;
const MIN_SPAN = 30; // seconds: a short session still gets a readable scale

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent?.append(node);
  return node;
}

/** The tooltip's markup: everything from the feed (ids, labels, text, model names) is escaped. */
function tooltipHtml(u, models, labels, sp) {
  const named = (l) => escapeHtml(`${info(l).glyph} ${labelName(l)}`);
  const probs = labels.map((l) => `<tr><th>${named(l)}</th><td>${pct(u.emotion.probs[l] ?? 0)}</td></tr>`).join("");
  const parts = breakdown(u, models).map((r) => `<tr class="${r.absent ? "absent" : ""}"><th>${r.name}</th><td>${escapeHtml(r.value)}</td></tr>`).join("");
  const who = sp ? ` · ${escapeHtml(speakerName(sp))}` : "";
  return `<div class="tt-head">${clock(u.start)}–${clock(u.end)} · #${escapeHtml(u.utterance_id)}${who}</div>` +
    `<div class="tt-label chip label-${escapeHtml(u.emotion.label)}">${named(u.emotion.label)} <b>${pct(confidence(u.emotion))}</b></div>` +
    `<p class="tt-text">${escapeHtml(u.text) || "<i>(no transcript)</i>"}</p>` +
    `<table class="tt-probs">${probs}</table><table class="tt-parts">${parts}</table>` +
    `<div class="tt-foot">${escapeHtml(source(u))}</div>`;
}

export class Timeline {
  constructor({ svg, scroll, tooltip, onOpen }) {
    this.svg = svg;
    this.scroll = scroll;
    this.tooltip = tooltip;
    this.onOpen = onOpen;
    this.nodes = new Map(); // utterance id -> <g>
    this.session = null;
    this.active = null; // id in the tab order
    this.zoom = 300;
    svg.setAttribute("height", HEIGHT);
    svg.innerHTML = `<defs>${patternDefs()}</defs>`;
    this.grid = el("g", { class: "grid" }, svg);
    this.layer = el("g", { class: "utts" }, svg);
    this.partial = el("rect", { class: "partial", y: BAND_Y, height: BAND_H, rx: 3 }, svg);
    this.nowLine = el("line", { class: "now", y1: TOP, y2: AXIS_Y }, svg);
    svg.addEventListener("keydown", (e) => this.#onKey(e));
    svg.addEventListener("focusin", (e) => this.#show(e.target.closest("g.utt")));
    svg.addEventListener("focusout", () => this.#hide());
    svg.addEventListener("pointerover", (e) => this.#show(e.target.closest("g.utt")));
    svg.addEventListener("pointerleave", () => this.#hide());
    svg.addEventListener("click", (e) => {
      const g = e.target.closest("g.utt");
      if (g) {
        this.picked = true;
        this.#setActive(Number(g.dataset.id));
        this.onOpen(Number(g.dataset.id), false);
      }
    });
  }

  #scale(session) {
    const width = this.scroll.clientWidth || 600;
    // The span grows in steps, not every second, so a live session moves nothing already drawn.
    const step = this.zoom === "all" ? 60 : 15;
    const duration = Math.ceil(Math.max(session?.duration ?? 0, MIN_SPAN) / step) * step;
    const span = this.zoom === "all" ? duration : Math.min(this.zoom, duration);
    const pps = (width - 2 * PAD) / span;
    return { pps, width: Math.max(width, Math.ceil(duration * pps + 2 * PAD)), x: (t) => PAD + t * pps };
  }

  /** `only`: a speaker id (as shown) whose utterances stay bright; the others are dimmed. */
  render(session, models, only = "") {
    const labels = labelsOf(session);
    // Each column has one rect per label: a new label list (a new session) redraws them all.
    if (session !== this.session || JSON.stringify(labels) !== JSON.stringify(this.labels)) {
      this.layer.replaceChildren();
      this.nodes.clear();
      this.session = session;
      this.labels = labels;
      this.active = null;
      this.picked = false;
      this.gridKey = null;
      this.#hide();
    }
    this.models = models;
    const { width, x, pps } = this.#scale(session);
    // Set only on change: even an unchanged value makes Chromium lay out the whole SVG again,
    // which late in a long session is most of the page's work per status tick.
    if (this.svg.getAttribute("width") !== String(width)) {
      this.svg.setAttribute("width", width);
      this.svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    }
    const gridKey = `${width}:${pps}`;
    if (gridKey !== this.gridKey) {
      this.gridKey = gridKey;
      this.#grid(width, x, pps);
    }
    const list = session ? session.list() : [];
    const key = JSON.stringify(editsOf(session));
    for (const u of list) {
      this.#place(u, x, pps, key);
      const g = this.nodes.get(u.utterance_id);
      const dim = Boolean(only) && g.dataset.speaker !== only;
      if (g.classList.contains("dim") !== dim) g.classList.toggle("dim", dim);
    }
    // Until the user picks one, Tab lands on the newest utterance.
    if (list.length && (!this.picked || !this.nodes.has(this.active))) this.#setActive(list[list.length - 1].utterance_id);
    const p = session?.partial;
    this.partial.style.display = p ? "" : "none";
    if (p) {
      this.partial.setAttribute("x", x(p.start));
      this.partial.setAttribute("width", Math.max(3, x(p.end) - x(p.start)));
    }
    const live = session && !session.end && session.origin === "live";
    this.nowLine.style.display = live ? "" : "none";
    this.nowLine.setAttribute("x1", x(session?.duration ?? 0));
    this.nowLine.setAttribute("x2", x(session?.duration ?? 0));
  }

  #grid(width, x, pps) {
    const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];
    const step = steps.find((s) => s * pps >= 80) ?? 3600;
    const end = (width - PAD) / pps;
    const parts = [];
    for (const f of [0, 0.5, 1]) {
      const y = TOP + PROB_H * (1 - f);
      parts.push(`<line class="h" x1="0" x2="${width}" y1="${y}" y2="${y}"/>`);
    }
    for (let t = 0; t <= end; t += step) {
      parts.push(`<line class="v" x1="${x(t)}" x2="${x(t)}" y1="${TOP}" y2="${AXIS_Y}"/>`);
      if (x(t) + 40 < width) parts.push(`<text class="tick" x="${x(t) + 3}" y="${AXIS_Y + 15}">${clock(t)}</text>`);
    }
    this.grid.innerHTML = parts.join("");
  }

  #place(u, x, pps, key) {
    let g = this.nodes.get(u.utterance_id);
    if (g?.placed === u && g.pps === pps && g.key === key) return; // unchanged: touching it would cost a relayout
    if (!g) {
      g = el("g", { class: "utt", role: "listitem", tabindex: "-1", "data-id": u.utterance_id });
      for (const l of this.labels) el("rect", { class: "p", "data-label": l, fill: info(l).color }, g);
      el("rect", { class: "band", y: BAND_Y, height: BAND_H, rx: 3 }, g);
      el("text", { class: "band-text", y: BAND_Y + BAND_H / 2 + 5 }, g);
      el("rect", { class: "spk", y: SPEAKER_Y, height: SPEAKER_H, rx: 2 }, g);
      el("text", { class: "spk-text", y: SPEAKER_Y + SPEAKER_H - 3 }, g);
      el("rect", { class: "hit", y: TOP - 4, height: AXIS_Y - TOP + 4, rx: 4 }, g);
      const later = [...this.nodes.keys()].filter((id) => id > u.utterance_id);
      this.layer.insertBefore(g, later.length ? this.nodes.get(Math.min(...later)) : null);
      this.nodes.set(u.utterance_id, g);
    }
    const x0 = x(u.start);
    const w = Math.max(3, x(u.end) - x0);
    const label = u.emotion.label;
    const i = info(label);
    g.dataset.label = label;
    const sp = shownSpeaker(this.session, u);
    g.dataset.speaker = sp?.id ?? "";
    g.setAttribute("aria-label",
      `${clock(u.start)}–${clock(u.end)}${sp ? `, ${speakerName(sp)}` : ""}, ${labelName(label)} ${pct(confidence(u.emotion))}: ${u.text ?? "no transcript"}`);
    let y = TOP + PROB_H;
    this.labels.forEach((l, k) => {
      const h = PROB_H * (u.emotion.probs[l] ?? 0);
      y -= h;
      const r = g.children[k];
      r.setAttribute("x", x0);
      r.setAttribute("width", w);
      r.setAttribute("y", y);
      r.setAttribute("height", h);
    });
    const band = g.querySelector(".band");
    band.setAttribute("x", x0);
    band.setAttribute("width", w);
    band.setAttribute("fill", i.fill);
    const text = g.querySelector(".band-text");
    text.setAttribute("x", x0 + 4);
    text.setAttribute("fill", i.ink);
    text.textContent = w >= 44 ? `${i.glyph} ${i.ko}` : w >= 14 ? i.glyph : "";
    const lane = g.querySelector(".spk");
    lane.setAttribute("x", x0);
    lane.setAttribute("width", w);
    lane.setAttribute("fill", sp ? speakerColour(sp.id) : "transparent");
    const who = g.querySelector(".spk-text");
    who.setAttribute("x", x0 + 3);
    who.textContent = !sp ? "" : w >= 90 ? speakerName(sp) : w >= 18 ? sp.id : "";
    const hit = g.querySelector(".hit");
    hit.setAttribute("x", x0 - 2);
    hit.setAttribute("width", w + 4);
    g.placed = u;
    g.pps = pps;
    g.key = key;
  }

  #setActive(id) {
    this.nodes.get(this.active)?.setAttribute("tabindex", "-1");
    this.active = id;
    this.nodes.get(id)?.setAttribute("tabindex", "0");
  }

  /** Scroll an utterance into view and mark it; move keyboard focus there only when asked to. */
  focus(id, moveFocus = true) {
    const g = this.nodes.get(id);
    if (!g) return;
    this.picked = true;
    this.#setActive(id);
    this.layer.querySelector(".selected")?.classList.remove("selected");
    g.classList.add("selected");
    if (moveFocus) g.focus({ preventScroll: true });
    const box = g.querySelector(".hit");
    const left = Number(box.getAttribute("x"));
    const view = this.scroll;
    if (left < view.scrollLeft || left > view.scrollLeft + view.clientWidth - 40) {
      view.scrollLeft = left - view.clientWidth / 2;
    }
  }

  #onKey(e) {
    const ids = [...this.nodes.keys()].sort((a, b) => a - b);
    const at = ids.indexOf(this.active);
    const move = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: ids.length - 1 }[e.key];
    if (move !== undefined) {
      e.preventDefault();
      const id = ids[Math.max(0, Math.min(ids.length - 1, move))];
      if (id !== undefined) this.focus(id);
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      if (this.active !== null) this.onOpen(this.active, true);
    } else if (e.key === "Escape") {
      this.#hide();
    }
  }

  #show(g) {
    if (!g || !this.session) return;
    const u = this.session.utterances.get(Number(g.dataset.id));
    if (!u) return;
    this.tooltip.innerHTML = tooltipHtml(u, this.models, this.labels, shownSpeaker(this.session, u));
    this.tooltip.hidden = false;
    const card = this.tooltip.offsetParent.getBoundingClientRect();
    const box = g.querySelector(".hit").getBoundingClientRect();
    const tw = this.tooltip.offsetWidth;
    let left = box.left - card.left + box.width / 2 - tw / 2;
    left = Math.max(8, Math.min(card.width - tw - 8, left));
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${box.bottom - card.top + 6}px`;
  }

  #hide() {
    this.tooltip.hidden = true;
  }
}
