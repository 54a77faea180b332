// The "current state" strip: is the feed connected, is sound coming in, is someone speaking, is
// processing keeping up, and which models are loaded. Every state is written out in words next
// to its colour dot, so nothing depends on colour alone.

import { escapeHtml } from "./html.js";

const ROLES = [
  ["asr", "ASR"],
  ["text", "text"],
  ["audio", "audio"],
  ["multimodal", "multimodal"],
  ["stacker", "stacker"],
];
const LAG_WARN_S = 3;
const SILENT_DB = -100; // the daemon's floor for digital silence (no input at all)
const STATES = {
  listening: "듣는 중 listening",
  waiting: "waiting for a browser microphone",
  analysing: "분석 중 analysing a file",
  ended: "",
};

const $ = (id) => document.getElementById(id);

export function renderConnection(conn, viewed) {
  const box = $("conn");
  let state = conn.state;
  let text;
  let sub = "";
  if (viewed?.origin === "recorded") {
    state = "replay";
    text = "녹음 재생 Replay";
    sub = "live feed continues in the background";
  } else if (conn.state === "connected") {
    text = "연결됨 Connected";
    sub = viewed?.hello?.replay ? "the daemon is replaying a recorded session" : "";
  } else if (conn.state === "reconnecting") {
    const wait = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
    text = `재연결 중 Reconnecting${wait ? ` in ${wait} s` : "…"}`;
    sub = `${conn.reason ?? ""}${conn.attempt ? ` · attempt ${conn.attempt}` : ""}`;
  } else {
    text = "연결 중 Connecting…";
  }
  if (viewed?.end && viewed.origin === "live") sub = `session ended (${viewed.end.reason})`;
  box.dataset.state = state;
  $("conn-text").textContent = text;
  $("conn-sub").textContent = sub;
}

/** `stale`: the feed is down, so the numbers shown are the last known ones (drawn faded). */
export function renderStatus(session, stale) {
  document.querySelector(".status").dataset.stale = String(stale);
  const s = session?.status;
  const level = session?.end ? null : s?.level_db;
  $("level").value = Number.isFinite(level) ? Math.max(-70, level) : -70;
  $("level-text").textContent = !Number.isFinite(level) ? "–" : level <= SILENT_DB ? "silent" : `${level.toFixed(0)} dB`;
  const source = s?.source ?? session?.hello?.source ?? "";
  $("source-text").textContent = source.startsWith("file:") ? `file: ${source.split("/").pop()}` : source;
  $("source-text").title = source;
  const speaking = $("speaking");
  const ended = Boolean(session?.end);
  speaking.textContent = ended ? "■ 종료 Ended" : !s ? "–" : s.speaking ? "● 말하는 중 Speaking" : "○ 조용함 Silent";
  speaking.dataset.on = String(!ended && Boolean(s?.speaking));
  $("state-text").textContent = ended ? "" : STATES[s?.state] ?? s?.state ?? "";
  const lag = $("lag");
  lag.textContent = !ended && Number.isFinite(s?.lag_s) ? `${s.lag_s.toFixed(1)} s${s.lag_s > LAG_WARN_S ? " ⚠ behind" : ""}` : "–";
  lag.dataset.warn = String(s?.lag_s > LAG_WARN_S);
  $("dropped").textContent = s?.dropped_frames ? `${s.dropped_frames} frames dropped` : s ? `${s.clients ?? 0} viewer(s)` : "";
  const models = session?.hello?.models;
  $("models").innerHTML = models
    ? ROLES.map(([key, name]) => {
      const value = models[key];
      return `<li class="${value ? "on" : "absent"}" title="${value ? `${name}: ${escapeHtml(value)}` : `${name}: not loaded`}">` +
        `<span aria-hidden="true">${value ? "✓" : "–"}</span> ${name}${value ? "" : " absent"}</li>`;
    }).join("")
    : `<li class="absent">${session?.origin === "recorded" ? "not in the recording" : "waiting for hello"}</li>`;
}
