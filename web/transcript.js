// The transcript: one row per utterance, oldest first, keyed by utterance id and updated in
// place (an utterance replaces its partial). Each row says when, what was said, the emotion with
// its confidence and where it came from, and the text / audio / multimodal / stacked breakdown.
// Keyboard: one row is in the tab order; Up, Down, Home and End move; Enter shows it on the
// timeline.

import { clock, confidence, info, labelName, pct } from "./labels.js";
import { breakdown, source } from "./describe.js";
import { editsOf, shownSpeaker, speakerColour, speakerName } from "./speakers.js";

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function speakerChip(sp) {
  const node = h("span", "speaker", speakerName(sp));
  node.style.borderColor = speakerColour(sp.id);
  node.dataset.speaker = sp.id;
  return node;
}

function chip(result) {
  const i = info(result.label);
  const node = h("span", `chip label-${result.label}`);
  node.append(h("span", "glyph", i.glyph), ` ${labelName(result.label)} `, h("b", "", pct(confidence(result))));
  return node;
}

export class Transcript {
  constructor({ list, onOpen }) {
    this.list = list;
    this.onOpen = onOpen;
    this.rows = new Map();
    this.session = null;
    this.active = null;
    this.partialRow = h("li", "row partial");
    list.addEventListener("keydown", (e) => this.#onKey(e));
    list.addEventListener("click", (e) => {
      const row = e.target.closest("li[data-id]");
      if (row) {
        this.picked = true;
        this.#setActive(Number(row.dataset.id));
        this.onOpen(Number(row.dataset.id), false);
      }
    });
  }

  /** `only`: a speaker id (as shown) whose rows alone are visible; "" = everyone's. */
  render(session, models, only = "") {
    if (session !== this.session) {
      this.list.replaceChildren();
      this.rows.clear();
      this.session = session;
      this.active = null;
      this.picked = false;
    }
    if (!session) return;
    const key = JSON.stringify(editsOf(session)); // a correction of the speakers redraws the rows
    for (const u of session.list()) {
      const known = this.rows.get(u.utterance_id);
      if (!(known?.message === u && known.models === models && known.key === key)) {
        const row = this.#row(session, u, models);
        if (known) known.node.replaceWith(row);
        else this.#insert(u.utterance_id, row);
        const focused = known && document.activeElement === known.node;
        this.rows.set(u.utterance_id, { node: row, message: u, models, key });
        if (focused) row.focus({ preventScroll: true });
      }
      const row = this.rows.get(u.utterance_id).node;
      const hidden = Boolean(only) && row.dataset.speaker !== only;
      if (row.hidden !== hidden) row.hidden = hidden;
    }
    // Until the user picks one, Tab lands on the newest row.
    if (this.rows.size && (!this.picked || !this.rows.has(this.active))) this.#setActive(Math.max(...this.rows.keys()));
    else this.rows.get(this.active)?.node.setAttribute("tabindex", "0");
    this.#partial(session, session.partial);
  }

  #insert(id, row) {
    const later = [...this.rows.keys()].filter((k) => k > id);
    const before = later.length ? this.rows.get(Math.min(...later)).node : null;
    if (before) this.list.insertBefore(row, before);
    else if (this.partialRow.isConnected) this.list.insertBefore(row, this.partialRow);
    else this.list.append(row);
  }

  #partial(session, p) {
    if (!p) {
      this.partialRow.remove();
      return;
    }
    const sp = shownSpeaker(session, p);
    const when = h("div", "when mono", `${clock(p.start)}–${clock(p.end)}`);
    if (sp) when.append(" ", speakerChip(sp));
    this.partialRow.replaceChildren(when, h("p", "text", p.text ? `${p.text} …` : "… 듣는 중 listening"));
    this.list.append(this.partialRow);
  }

  #row(session, u, models) {
    const row = h("li", `row label-${u.emotion.label}`);
    row.dataset.id = u.utterance_id;
    row.dataset.label = u.emotion.label;
    row.tabIndex = u.utterance_id === this.active ? 0 : -1;
    const head = h("div", "head");
    const sp = shownSpeaker(session, u);
    head.append(h("span", "when mono", `${clock(u.start)}–${clock(u.end)}`));
    if (sp) {
      row.dataset.speaker = sp.id;
      head.append(speakerChip(sp));
    }
    head.append(chip(u.emotion), h("span", "from", source(u)));
    const text = h("p", "text", u.text?.trim() || "(no transcript)");
    if (!u.text?.trim()) text.classList.add("empty");
    const parts = h("dl", "parts");
    for (const r of breakdown(u, models)) {
      const cell = h("div", r.absent ? "absent" : "");
      cell.append(h("dt", "", r.name), h("dd", "", r.value));
      parts.append(cell);
    }
    row.append(head, text, parts);
    return row;
  }

  #setActive(id) {
    this.rows.get(this.active)?.node.setAttribute("tabindex", "-1");
    this.active = id;
    this.rows.get(id)?.node.setAttribute("tabindex", "0");
  }

  /** Bring a row into view and mark it; move keyboard focus there only when asked to. */
  focus(id, moveFocus = true) {
    const row = this.rows.get(id)?.node;
    if (!row) return;
    this.picked = true;
    this.#setActive(id);
    this.list.querySelector(".selected")?.classList.remove("selected");
    row.classList.add("selected");
    row.scrollIntoView({ block: "nearest" });
    if (moveFocus) row.focus({ preventScroll: true });
  }

  #onKey(e) {
    const ids = [...this.rows.keys()].sort((a, b) => a - b);
    const at = ids.indexOf(this.active);
    const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: ids.length - 1 }[e.key];
    if (move !== undefined) {
      e.preventDefault();
      const id = ids[Math.max(0, Math.min(ids.length - 1, move))];
      if (id !== undefined) this.focus(id);
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (this.active !== null) this.onOpen(this.active, true);
    }
  }
}
