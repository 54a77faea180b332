// How every view shows a label: Korean and English names, an Okabe–Ito colour (safe for the
// common colour-vision deficiencies), a glyph and a fill pattern, so that colour is never the only
// thing that tells two labels apart. Which labels a session has, and in what order, is the
// server's to say (its hello); this table only knows how to draw the four the trainer ships, and
// draws any other label in grey under its own name.

const KNOWN = {
  angry: { ko: "분노", en: "angry", color: "#D55E00", ink: "#ffffff", glyph: "▲", pattern: "hatch" },
  happiness: { ko: "기쁨", en: "happiness", color: "#E69F00", ink: "#1b1b1b", glyph: "●", pattern: "dots" },
  neutral: { ko: "중립", en: "neutral", color: "#B4B4B4", ink: "#1b1b1b", glyph: "◆", pattern: "none" },
  sadness: { ko: "슬픔", en: "sadness", color: "#0072B2", ink: "#ffffff", glyph: "▼", pattern: "lines" },
};
const UNKNOWN = { ko: "?", en: "unknown", color: "#777777", ink: "#ffffff", glyph: "?", pattern: "none" };

// Each style with its fill pattern's id, made from these keys, never from a label the feed sent.
const STYLES = Object.fromEntries(Object.entries({ ...KNOWN, unknown: UNKNOWN })
  .map(([key, i]) => [key, { ...i, fill: `url(#pat-${key})` }]));

/** The session's labels in the order its hello gave them; before a hello, the four known ones. */
export function labelsOf(session) {
  const labels = session?.hello?.labels;
  return Array.isArray(labels) ? labels : Object.keys(KNOWN);
}

export function info(label) {
  return Object.hasOwn(KNOWN, label) ? STYLES[label] : { ...STYLES.unknown, en: String(label) };
}

/** "분노 angry": the name staff read, with the English the feed uses. */
export function labelName(label) {
  const i = info(label);
  return `${i.ko} ${i.en}`;
}

export function pct(p) {
  return `${Math.round(p * 100)}%`;
}

/** The winning probability of an emotion result ({label, probs}). */
export function confidence(result) {
  return result?.probs?.[result.label] ?? null;
}

/** Session time as m:ss, or h:mm:ss past the hour (sessions run 45 to 90 minutes). */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds ?? 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** SVG <defs> with each label's fill pattern (`info(label).fill`), for the timeline, legend and summary. */
export function patternDefs() {
  const shapes = {
    hatch: '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="rgba(255,255,255,.75)" stroke-width="1.4"/>',
    dots: '<circle cx="3" cy="3" r="1.2" fill="rgba(0,0,0,.45)"/>',
    lines: '<path d="M0,3 h6" stroke="rgba(255,255,255,.7)" stroke-width="1.2"/>',
    none: "",
  };
  return Object.entries(STYLES).map(([key, i]) =>
    `<pattern id="pat-${key}" width="6" height="6" patternUnits="userSpaceOnUse">` +
    `<rect width="6" height="6" fill="${i.color}"/>${shapes[i.pattern]}</pattern>`).join("");
}
