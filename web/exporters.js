// Session exports, as pure functions of a Session so they are easy to check: CSV and JSON for
// analysis, SRT and WebVTT to watch a recording with the emotion in each cue, and W3C EmotionML
// 1.0 for tools that speak it. Times are seconds from the session's start (subtitle formats use
// their own hh:mm:ss,mmm); a model that did not run is an empty cell / null, never a guess.
// Speakers are exported as shown, with this session's corrections (web/speakers.js); `only`
// (a shown speaker id) exports that speaker's utterances alone. Only labels leave: the feed has
// no voiceprint to export.

import { confidence, info, labelsOf } from "./labels.js";
import { escapeHtml } from "./html.js";
import { editsOf, shownSpeaker, speakersIn, voiceName } from "./speakers.js";

const BREAKDOWN = ["text_emotion", "audio_emotion", "multimodal_emotion"];

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const s = String(value);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function round(x, digits = 4) {
  return x === null || x === undefined ? null : Number(x.toFixed(digits));
}

/** The utterances to export, in time order: all of them, or those of the shown speaker `only`. */
function chosen(session, only) {
  const list = session.list();
  return only ? list.filter((u) => shownSpeaker(session, u)?.id === only) : list;
}

/** One row per utterance. Starts with a BOM so spreadsheet programs read the Korean as UTF-8. */
export function toCSV(session, _audio, only = "") {
  const labels = labelsOf(session);
  const header = [
    "session", "utterance_id", "start", "end", "speaker", "speaker_role", "speaker_similarity",
    "text", "label", "label_ko", "confidence",
    ...labels.map((l) => `p_${l}`),
    ...BREAKDOWN.flatMap((k) => [`${k}_label`, `${k}_confidence`]),
    "used",
  ];
  const rows = chosen(session, only).map((u) => [
    session.id, u.utterance_id, u.start, u.end, ...speakerCells(shownSpeaker(session, u)),
    u.text ?? "", u.emotion.label, info(u.emotion.label).ko,
    round(confidence(u.emotion)),
    ...labels.map((l) => round(u.emotion.probs[l])),
    ...BREAKDOWN.flatMap((k) => [u[k]?.label ?? null, round(confidence(u[k]))]),
    (u.used ?? []).join(" "),
  ]);
  return "\uFEFF" + [header, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function speakerCells(sp) {
  return sp ? [sp.id, sp.role ?? "", round(sp.similarity, 3)] : ["", "", null];
}

/**
 * The complete numbered feed as received, plus the hello: enough to rebuild the session. Each
 * utterance keeps the feed's `speaker` and gets `speaker_shown` (after corrections); `speakers`
 * says which corrections were made.
 */
export function toJSON(session, _audio, only = "") {
  return JSON.stringify({
    schema: session.hello?.schema ?? 1,
    session: session.id,
    hello: session.hello,
    exported: new Date().toISOString(),
    gaps: session.gaps,
    speakers: { ids: speakersIn(session), corrections: editsOf(session), only: only || null },
    utterances: chosen(session, only).map((u) => ({ ...u, speaker_shown: shownSpeaker(session, u) })),
    messages: session.messages,
  }, null, 2);
}

function timestamp(seconds, separator) {
  const ms = Math.round(Math.max(0, seconds) * 1000);
  const h = String(Math.floor(ms / 3600000)).padStart(2, "0");
  const m = String(Math.floor((ms % 3600000) / 60000)).padStart(2, "0");
  const s = String(Math.floor((ms % 60000) / 1000)).padStart(2, "0");
  return `${h}:${m}:${s}${separator}${String(ms % 1000).padStart(3, "0")}`;
}

function cueText(u) {
  const i = info(u.emotion.label);
  const p = Math.round(confidence(u.emotion) * 100);
  return `[${i.ko} ${i.en} ${p}%] ${(u.text ?? "").trim() || "(no transcript)"}`;
}

/**
 * SRT cues open with the same `<v Client>` voice span as WebVTT's (players that know no voice
 * spans drop the unknown tag, as they do other markup); the text is kept free of `<`, `>` so no
 * transcript can open a tag of its own.
 */
export function toSRT(session, _audio, only = "") {
  return chosen(session, only).map((u, n) => {
    const sp = shownSpeaker(session, u);
    const text = cueText(u).replaceAll("-->", "->").replaceAll("<", "‹").replaceAll(">", "›");
    return [
      String(n + 1),
      `${timestamp(u.start, ",")} --> ${timestamp(u.end, ",")}`,
      sp ? `<v ${voiceTag(sp)}>${text}` : text,
    ].join("\n");
  }).join("\n\n") + "\n";
}

/** A voice span's name: no `>` or line break may end the tag early. */
function voiceTag(sp) {
  return voiceName(sp).replace(/[<>&\r\n]/g, " ").trim() || sp.id;
}

/**
 * WebVTT cue text escapes only `& < >`: readers outside the browser (ffmpeg's, for one) know no
 * other character reference, so an `&quot;` from the HTML rule would show up literally. Escaping
 * `>` also keeps "-->", which would end the cue, out of its text.
 */
function vttText(s) {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

export function toVTT(session, _audio, only = "") {
  const cues = chosen(session, only).map((u) => {
    const sp = shownSpeaker(session, u);
    return [
      `utterance-${u.utterance_id}`,
      `${timestamp(u.start, ".")} --> ${timestamp(u.end, ".")}`,
      (sp ? `<v ${voiceTag(sp)}>` : "") + vttText(cueText(u)),
    ].join("\n");
  });
  return ["WEBVTT", "", ...cues.flatMap((c) => [c, ""])].join("\n");
}

/**
 * EmotionML 1.0: a category vocabulary of the session's labels, one <emotion> per utterance with
 * its label and confidence, a media-fragment <reference> into the session's audio, and absolute
 * start/end (ms since 1970) when the session's start time is known. Each emotion's <info> holds
 * the transcript and a <kem:speaker id role> element (EmotionML leaves the content of <info> to
 * the application; kem is this project's namespace); with the speaker filter set, the document
 * has that speaker's emotions alone.
 */
export function toEmotionML(session, audioUri, only = "") {
  const started = Date.parse(session.hello?.started ?? "");
  const vocabulary = [
    '  <vocabulary type="category" id="labels">',
    ...labelsOf(session).map((l) => `    <item name="${escapeHtml(l)}"/>`),
    "  </vocabulary>",
  ];
  const emotions = chosen(session, only).map((u) => {
    const times = Number.isFinite(started)
      ? ` start="${Math.round(started + u.start * 1000)}" end="${Math.round(started + u.end * 1000)}"` : "";
    const value = Math.min(1, Math.max(0, confidence(u.emotion)));
    const sp = shownSpeaker(session, u);
    const who = sp ? `<kem:speaker id="${escapeHtml(sp.id)}" role="${escapeHtml(sp.role ?? "")}"/>` : "";
    return [
      `  <emotion id="utterance-${escapeHtml(u.utterance_id)}"${times}>`,
      u.text || sp ? `    <info>${escapeHtml(u.text ?? "")}${who}</info>` : null,
      `    <category name="${escapeHtml(u.emotion.label)}" value="${value.toFixed(4)}"/>`,
      `    <reference uri="${escapeHtml(`${audioUri}#t=${u.start.toFixed(3)},${u.end.toFixed(3)}`)}"/>`,
      "  </emotion>",
    ].filter(Boolean).join("\n");
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<emotionml xmlns="http://www.w3.org/2009/10/emotionml" xmlns:kem="urn:korean-emotion-monitor:speakers" version="1.0" category-set="#labels">',
    `  <info>session ${escapeHtml(session.id)}</info>`,
    ...vocabulary,
    ...emotions,
    "</emotionml>",
    "",
  ].join("\n");
}

export const FORMATS = {
  csv: { make: toCSV, type: "text/csv;charset=utf-8" },
  json: { make: toJSON, type: "application/json" },
  srt: { make: toSRT, type: "application/x-subrip;charset=utf-8" },
  vtt: { make: toVTT, type: "text/vtt;charset=utf-8" },
  emotionml: { make: toEmotionML, type: "application/emotionml+xml", ext: "emotionml.xml" },
};

/** Hand the browser a file to save. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
