// The four labels as every view shows them: Korean and English names, an Okabe–Ito colour
// (safe for the common colour-vision deficiencies), a glyph and a fill pattern, so that colour is
// never the only thing that tells two labels apart. Order matches trainer/labels.py LABELS.

export const LABELS = ["angry", "happiness", "neutral", "sadness"];

export const LABEL_INFO = {
  angry: { ko: "분노", en: "angry", color: "#D55E00", ink: "#ffffff", glyph: "▲", pattern: "hatch" },
  happiness: { ko: "기쁨", en: "happiness", color: "#E69F00", ink: "#1b1b1b", glyph: "●", pattern: "dots" },
  neutral: { ko: "중립", en: "neutral", color: "#B4B4B4", ink: "#1b1b1b", glyph: "◆", pattern: "none" },
  sadness: { ko: "슬픔", en: "sadness", color: "#0072B2", ink: "#ffffff", glyph: "▼", pattern: "lines" },
};

const UNKNOWN = { ko: "?", en: "unknown", color: "#777777", ink: "#ffffff", glyph: "?", pattern: "none" };

export function info(label) {
  return LABEL_INFO[label] ?? { ...UNKNOWN, en: String(label) };
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

/** SVG <defs> with one fill pattern per label; the timeline and summary reference them by id. */
export function patternDefs() {
  const shapes = {
    hatch: '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="rgba(255,255,255,.75)" stroke-width="1.4"/>',
    dots: '<circle cx="3" cy="3" r="1.2" fill="rgba(0,0,0,.45)"/>',
    lines: '<path d="M0,3 h6" stroke="rgba(255,255,255,.7)" stroke-width="1.2"/>',
    none: "",
  };
  return LABELS.map((label) => {
    const i = info(label);
    return `<pattern id="pat-${label}" width="6" height="6" patternUnits="userSpaceOnUse">` +
      `<rect width="6" height="6" fill="${i.color}"/>${shapes[i.pattern]}</pattern>`;
  }).join("");
}
