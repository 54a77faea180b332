// Wires the dashboard together: the live feed into the store, the store (or a recording being
// replayed) into the views, and the controls (session picker, zoom, follow / jump to live,
// exports, microphone). Rendering is coalesced to one pass per animation frame, because a busy
// feed can deliver several messages between two frames.

import { FeedClient } from "./feed.js";
import { Store } from "./store.js";
import { Timeline } from "./timeline.js";
import { Transcript } from "./transcript.js";
import { renderSummary } from "./summary.js";
import { renderConnection, renderStatus } from "./status.js";
import { RecordedPlayer, listRecorded, listRooms } from "./replay.js";
import { BrowserMic } from "./mic.js";
import { FORMATS, download } from "./exporters.js";
import { renderLegend } from "./legend.js";
import { clock, labelsOf } from "./labels.js";
import { escapeHtml } from "./html.js";
import { editsOf, speakerName, speakersIn } from "./speakers.js";

const SCHEMA = 1; // docs/feed.md
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") ?? "";
const base = new URL(".", location.href);
let room = params.get("room"); // null: the daemon's only room; chosen at start when it serves several
const socketUrl = (path) => {
  const url = new URL(path, base);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (room) url.searchParams.set("room", room);
  return url.href;
};

// ---- rooms -------------------------------------------------------------------------------------

/**
 * A daemon with several rooms refuses /ws without ?room=, so the room is settled before the feed
 * connects: the one in the address, else the first the daemon lists. Changing it loads the page
 * again for that room (a page watches one room; another tab watches another).
 */
async function chooseRoom() {
  let rooms = [];
  try {
    rooms = await listRooms(base, token);
  } catch (error) {
    return `Could not list the daemon's rooms (${error.message}); watching its default room.`;
  }
  if (!room && rooms.length > 1) room = rooms[0].room;
  const picker = $("room-picker");
  picker.hidden = rooms.length < 2 && !room;
  const select = $("room-select");
  select.innerHTML = rooms
    .map((r) => `<option value="${escapeHtml(r.room)}">${escapeHtml(r.room)} · ${escapeHtml(r.source)}</option>`)
    .join("");
  let problem = null;
  if (room && !rooms.some((r) => r.room === room)) {
    problem = `This daemon has no room "${room}" yet; the page waits for it.`;
    select.insertAdjacentHTML("afterbegin", `<option value="${escapeHtml(room)}">${escapeHtml(room)}</option>`);
  }
  if (room) select.value = room;
  select.addEventListener("change", () => {
    const next = new URLSearchParams(location.search);
    next.set("room", select.value);
    location.search = next.toString();
  });
  return problem;
}
// Settled before the feed and the microphone are made: their URLs name the room.
const roomProblem = await chooseRoom();

const view = { mode: "live", session: null, speaker: "" }; // mode: "live" (follows the daemon), "pinned", "recorded"; speaker: shown id filter
let conn = { state: "connecting" };
let follow = true;
let recorded = [];
let scheduled = false;

const store = new Store((session, msg) => {
  if (view.mode === "live" && session.id === feed.liveId && view.session !== session) {
    view.session = session;
  } else if (view.mode !== "live" && session.id === feed.liveId && msg.type === "hello" && view.session?.id !== session.id) {
    notice(`A new live session started (${session.id}). Pick it in the session list to watch it.`);
  }
  if (msg.type === "error") notice(`Daemon: ${msg.message}`);
  if (msg.type === "utterance" && !session.utterances.has(msg.utterance_id)) notice(session.errors.at(-1).message);
  if (msg.type === "hello" && msg.schema !== SCHEMA) {
    notice(`The daemon speaks feed schema ${msg.schema}; this dashboard reads schema ${SCHEMA}. Reload the page, or use the dashboard that ships with the daemon.`);
  }
  if (msg.type === "session_end") refreshRecorded();
  schedule();
});
const feed = new FeedClient({
  url: socketUrl("ws"), token, store,
  onState: (state) => {
    conn = state;
    schedule();
  },
});
const player = new RecordedPlayer({ onChange: () => schedule() });
const timeline = new Timeline({
  svg: $("timeline"), scroll: $("timeline-scroll"), tooltip: $("tooltip"),
  onOpen: (id, moveFocus) => transcript.focus(id, moveFocus),
});
const transcript = new Transcript({
  list: $("transcript"),
  onOpen: (id, moveFocus) => timeline.focus(id, moveFocus),
});

function current() {
  return view.mode === "recorded" ? player.session : view.session;
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    render();
  });
}

function render() {
  const session = current();
  const models = session?.hello?.models ?? null;
  if (session?.id !== view.shownId) {
    view.shownId = session?.id;
    view.speaker = ""; // a filter is about one session's speakers
  }
  renderSpeakers(session);
  timeline.render(session, models, view.speaker);
  transcript.render(session, models, view.speaker);
  renderSummary($("summary"), $("summary-span"), session);
  renderLegend($("legend"), labelsOf(session));
  renderConnection(conn, session);
  renderStatus(session, session?.origin === "live" && session.id === feed.liveId && conn.state !== "connected");
  $("count").textContent = session ? `${session.utterances.size} utterances · ${clock(session.duration)}` : "";
  renderPicker();
  renderReplay();
  if (session?.gaps.length) {
    const lost = session.gaps.reduce((n, g) => n + g.upTo - g.after, 0);
    notice(`${lost} feed message(s) could not be recovered from the daemon after a reconnect; the rest of the session is complete.`);
  }
  if (follow) toLive();
  $("follow-state").hidden = !follow;
  $("jump-live").hidden = follow;
}

// ---- following live vs. looking back -------------------------------------------------------

const scrollBox = $("timeline-scroll");
const list = $("transcript");
const atEnd = () =>
  scrollBox.scrollLeft + scrollBox.clientWidth >= scrollBox.scrollWidth - 8 &&
  list.scrollTop + list.clientHeight >= list.scrollHeight - 8;

function toLive() {
  scrollBox.scrollLeft = scrollBox.scrollWidth;
  list.scrollTop = list.scrollHeight;
}

for (const box of [scrollBox, list]) {
  box.addEventListener("scroll", () => {
    const now = atEnd();
    if (now !== follow) {
      follow = now;
      schedule();
    }
  }, { passive: true });
}
$("jump-live").addEventListener("click", () => {
  follow = true;
  render();
});

for (const button of document.querySelectorAll("[data-zoom]")) {
  button.addEventListener("click", () => {
    const zoom = button.dataset.zoom;
    timeline.zoom = zoom === "all" ? "all" : Number(zoom);
    for (const b of document.querySelectorAll("[data-zoom]")) b.setAttribute("aria-pressed", String(b === button));
    render();
  });
}
new ResizeObserver(() => schedule()).observe(scrollBox);

// ---- sessions: live ones seen in this tab, recorded ones from the daemon ---------------------

let pickerKey = "";
function renderPicker() {
  const live = [...store.sessions.values()].filter((s) => s.origin === "live").reverse();
  const chosen = view.mode === "recorded" ? `rec:${player.session?.id}` : `live:${view.session?.id ?? ""}`;
  const key = JSON.stringify([live.map((s) => [s.id, Boolean(s.end)]), recorded.map((r) => r.id), chosen, feed.liveId]);
  if (key === pickerKey) return;
  pickerKey = key;
  const started = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  // Ids and counts come from the feed and from folder names under --record DIR: escaped.
  const option = (value, text) => `<option value="${escapeHtml(value)}">${escapeHtml(text)}</option>`;
  const options = [];
  options.push(`<optgroup label="실시간 Live">`);
  if (!live.length) options.push(`<option value="live:" disabled>waiting for the daemon…</option>`);
  for (const s of live) {
    const tag = s.id === feed.liveId && !s.end ? "● live" : "ended";
    options.push(option(`live:${s.id}`, `${tag} · ${started(s.hello?.started)} · ${s.id}`));
  }
  options.push(`</optgroup><optgroup label="녹음 Recorded">`);
  if (!recorded.length) options.push(`<option disabled>none (the daemon records with --record DIR)</option>`);
  for (const r of recorded) {
    const where = r.room && r.room !== room ? ` · room ${r.room}` : "";
    options.push(option(`rec:${r.id}`, `${started(r.started)} · ${clock(r.duration)} · ${r.utterances} utt. · ${r.id}${where}`));
  }
  options.push("</optgroup>");
  const select = $("session-select");
  select.innerHTML = options.join("");
  select.value = chosen;
}

async function refreshRecorded() {
  try {
    recorded = await listRecorded(base, token);
  } catch {
    recorded = []; // the daemon is not recording, or is restarting: the list is simply empty
  }
  schedule();
}

$("session-select").addEventListener("change", async (event) => {
  const value = event.target.value;
  const kind = value.slice(0, value.indexOf(":"));
  const id = value.slice(value.indexOf(":") + 1);
  player.pause();
  if (kind === "live") {
    view.mode = id === feed.liveId ? "live" : "pinned";
    view.session = store.sessions.get(id) ?? null;
  } else {
    const meta = recorded.find((r) => r.id === id);
    try {
      await player.load(base, token, meta);
      view.mode = "recorded";
    } catch (error) {
      notice(error.message);
    }
  }
  follow = true;
  render();
});
$("refresh-sessions").addEventListener("click", refreshRecorded);

// ---- replay controls ---------------------------------------------------------------------------

function renderReplay() {
  const on = view.mode === "recorded";
  $("replay").hidden = !on;
  if (!on) return;
  const seek = $("replay-seek");
  seek.max = String(player.duration);
  if (document.activeElement !== seek) seek.value = String(player.position);
  $("replay-time").textContent = `${clock(player.position)} / ${clock(player.duration)}`;
  $("replay-play").textContent = player.playing ? "⏸ 일시정지 Pause" : "▶ 재생 Play";
  $("replay-download").href = player.audioUrl;
  syncAudio();
}

/** The recording's audio follows the playhead (the player's clock leads; the audio is nudged). */
function syncAudio() {
  const audio = $("replay-audio");
  const audible = view.mode === "recorded" && player.playing && $("replay-listen").checked && player.speed <= 4;
  if (!audible) {
    if (!audio.paused) audio.pause();
    return;
  }
  if (audio.getAttribute("src") !== player.audioUrl) audio.src = player.audioUrl;
  audio.playbackRate = player.speed;
  if (Math.abs(audio.currentTime - player.position) > 0.3) audio.currentTime = player.position;
  if (audio.paused) audio.play().catch((error) => notice(`The recording's audio cannot be played here (${error.message}).`));
}
$("replay-play").addEventListener("click", () => (player.playing ? player.pause() : player.play()));
$("replay-seek").addEventListener("input", (e) => player.seek(Number(e.target.value)));
$("replay-speed").addEventListener("change", (e) => player.setSpeed(Number(e.target.value)));
$("replay-listen").addEventListener("change", syncAudio);

// ---- exports -------------------------------------------------------------------------------------

for (const button of document.querySelectorAll("[data-export]")) {
  button.addEventListener("click", () => {
    const session = current();
    if (!session?.utterances.size) {
      notice("Nothing to export yet: this session has no utterances.");
      return;
    }
    const format = FORMATS[button.dataset.export];
    // The only API URL without ?token=: it is written into a file that may be shared, not fetched.
    const audio = new URL(`api/sessions/${encodeURIComponent(session.id)}/audio.wav`, base).href;
    const only = view.speaker ? `-${view.speaker}` : "";
    download(`emotion-${session.id}${only}.${format.ext ?? button.dataset.export}`, format.make(session, audio, view.speaker), format.type);
  });
}

// ---- speakers: filter, "S1 is the counselor", swap S1/S2 (this view only) ------------------------

let speakersKey = "";
function renderSpeakers(session) {
  const ids = speakersIn(session);
  const edits = editsOf(session);
  const key = JSON.stringify([session?.id, ids, edits, view.speaker]);
  if (key === speakersKey) return;
  speakersKey = key;
  // Ids come from the feed: escaped like every other value written into markup.
  const option = (value, text) => `<option value="${escapeHtml(value)}">${escapeHtml(text)}</option>`;
  const sample = (id) => session.list().find((u) => u.speaker?.id === id);
  const shown = (id) => {
    const u = sample(id);
    return u ? speakerName({ ...u.speaker, id }) : id;
  };
  $("speaker-filter").innerHTML = option("", "모두 everyone") + ids.map((id) => option(id, shown(id))).join("");
  $("speaker-filter").value = view.speaker;
  $("speaker-counselor").innerHTML = option("", "as detected") + ids.map((id) => option(id, id)).join("");
  $("speaker-counselor").value = edits.counselor ?? "";
  $("speaker-swap").setAttribute("aria-pressed", String(edits.swap));
  $("speaker-swap").disabled = !(ids.includes("S1") && ids.includes("S2"));
  document.querySelector(".toolbar.speakers").hidden = !ids.length;
}
$("speaker-filter").addEventListener("change", (e) => {
  view.speaker = e.target.value;
  render();
});
$("speaker-counselor").addEventListener("change", (e) => {
  const session = current();
  if (session) editsOf(session).counselor = e.target.value || null;
  render();
});
$("speaker-swap").addEventListener("click", () => {
  const session = current();
  if (!session) return;
  const edits = editsOf(session);
  edits.swap = !edits.swap;
  render();
});

// ---- "enroll my voice": the daemon keeps a voiceprint (an embedding, no audio) -------------------

const ENROLL_S = 12;
$("enroll-button").addEventListener("click", async () => {
  const button = $("enroll-button");
  const role = $("enroll-role").value;
  const state = $("enroll-state");
  let answer;
  const answered = new Promise((resolve) => (answer = resolve));
  const recorder = new BrowserMic({
    url: socketUrl(`enroll?role=${encodeURIComponent(role)}`), token,
    onState: () => {},
    onReply: (msg) => answer(msg),
  });
  button.disabled = true;
  try {
    state.textContent = "starting…";
    await recorder.start();
    for (let left = ENROLL_S; left > 0; left -= 1) {
      state.textContent = `● 말씀하세요 Speak now… ${left} s`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    state.textContent = "making the voiceprint…";
    recorder.send({ type: "done" });
    const reply = await Promise.race([answered, new Promise((resolve) => setTimeout(() => resolve(null), 30000))]);
    if (reply?.type === "enrolled") {
      notice(`Enrolled ${reply.role} from ${reply.speech_s} s of speech: from now on that voice is shown as ${reply.role}. Only a voiceprint (numbers, no audio) is kept, on the daemon's machine.`);
    } else {
      notice(`Enrolment failed: ${reply?.message ?? "the daemon did not answer"}`);
    }
  } catch (error) {
    notice(`Enrolment failed: ${error.message}`);
  } finally {
    recorder.stop();
    state.textContent = "";
    button.disabled = false;
  }
});

// ---- microphone ---------------------------------------------------------------------------------

const mic = new BrowserMic({
  url: socketUrl("mic"), token,
  onState: ({ text, error }) => {
    if (text) $("mic-state").textContent = text;
    if (error) notice(`Microphone: ${error}`);
  },
});
$("mic-button").addEventListener("click", async () => {
  const button = $("mic-button");
  if (mic.active) {
    mic.stop();
    button.setAttribute("aria-pressed", "false");
    $("mic-label").textContent = "마이크 켜기 Use this microphone";
    $("mic-state").textContent = "";
    return;
  }
  button.disabled = true;
  $("mic-state").textContent = "starting…";
  try {
    await mic.start();
    button.setAttribute("aria-pressed", "true");
    $("mic-label").textContent = "마이크 끄기 Stop microphone";
  } catch (error) {
    $("mic-state").textContent = "";
    notice(error.message);
  } finally {
    button.disabled = false;
  }
});

// ---- notices, start ----------------------------------------------------------------------------

let noticeTimer = null;
function notice(text) {
  const box = $("notice");
  if (box.textContent === text && !box.hidden) return;
  box.textContent = text;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (box.hidden = true), 15000);
}

setInterval(() => renderConnection(conn, current()), 1000); // the reconnect countdown
if (roomProblem) notice(roomProblem);
feed.start();
refreshRecorded();
render();
