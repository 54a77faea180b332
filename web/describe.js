// How one utterance's results are put into words, shared by the transcript, the timeline's
// tooltip and the exports' readers. A model that gave no result is never filled in: it reads
// "absent" (not loaded) or "no result" (loaded, nothing to classify, e.g. no words heard).

import { confidence, labelName, pct } from "./labels.js";

const PARTS = [
  ["text", "text_emotion", "텍스트 text"],
  ["audio", "audio_emotion", "음성 audio"],
  ["multimodal", "multimodal_emotion", "멀티모달 multimodal"],
];

/** [{name, value, absent}] for text / audio / multimodal / stacked. */
export function breakdown(u, models) {
  const rows = PARTS.map(([role, field, name]) => {
    const result = u[field];
    if (result) return { name, value: `${labelName(result.label)} ${pct(confidence(result))}`, absent: false };
    return { name, value: models?.[role] ? "no result" : "absent", absent: true };
  });
  const stacked = models?.stacker
    ? { name: "스태킹 stacked", value: `${labelName(u.emotion.label)} ${pct(confidence(u.emotion))}`, absent: false }
    : { name: "스태킹 stacked", value: "absent", absent: true };
  return [...rows, stacked];
}

/** Which model(s) the final emotion came from, in the feed's own words ("used"). */
export function source(u) {
  const used = u.used ?? [];
  return used.length ? `from ${used.join(" + ")}` : "";
}
