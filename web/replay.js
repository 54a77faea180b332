// Replaying a recorded session in the browser from its feed.jsonl: the messages are applied to
// a fresh Session up to a playhead that moves at the chosen speed, so the views behave exactly
// as they did live. Seeking back rebuilds the session from the start (thousands of messages take
// milliseconds); seeking forward just applies more.

import { Session } from "./store.js";

async function getJson(path, apiBase, token) {
  const url = new URL(path, apiBase);
  if (token) url.searchParams.set("token", token);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

export const listRecorded = (apiBase, token) => getJson("api/sessions", apiBase, token);

/** The daemon's rooms (GET /api/rooms, docs/feed.md): [{room, session, source, state, ...}]. */
export const listRooms = (apiBase, token) => getJson("api/rooms", apiBase, token);

/**
 * A recorded session's labels in the server's order, from an utterance's `probs`, which name
 * every label (docs/feed.md); undefined for a recording without one, as before a hello.
 */
function labelsIn(messages) {
  const probs = messages.find((m) => m.type === "utterance" && m.emotion?.probs)?.emotion.probs;
  return typeof probs === "object" ? Object.keys(probs) : undefined;
}

export class RecordedPlayer {
  constructor({ onChange }) {
    this.onChange = onChange; // (player) whenever the playhead or the session changed
    this.session = null;
    this.messages = [];
    this.position = 0;
    this.speed = 1;
    this.playing = false;
    this.applied = 0;
  }

  async load(apiBase, token, meta) {
    const url = new URL(`api/sessions/${encodeURIComponent(meta.id)}/feed.jsonl`, apiBase);
    if (token) url.searchParams.set("token", token);
    const response = await fetch(url);
    if (!response.ok) throw new Error(`could not load session ${meta.id}: ${response.status} ${response.statusText}`);
    const lines = (await response.text()).split("\n").filter((line) => line.trim());
    const messages = [];
    for (const [n, line] of lines.entries()) {
      try {
        messages.push(JSON.parse(line));
      } catch {
        // The daemon writes line by line; only a crash mid-write leaves a broken last line.
        if (n !== lines.length - 1) throw new Error(`session ${meta.id}: feed.jsonl line ${n + 1} is not JSON`);
      }
    }
    messages.sort((a, b) => a.seq - b.seq);
    this.meta = meta;
    this.messages = messages;
    this.labels = labelsIn(messages);
    const end = messages.find((m) => m.type === "session_end");
    this.duration = Math.max(end?.duration ?? 0, messages.at(-1)?.t ?? 0, meta.duration ?? 0);
    const audio = new URL(`api/sessions/${encodeURIComponent(meta.id)}/audio.wav`, apiBase);
    if (token) audio.searchParams.set("token", token);
    this.audioUrl = audio.href;
    this.seek(0);
  }

  #rebuild() {
    const session = new Session(this.meta.id, "recorded");
    // feed.jsonl holds only numbered messages, not the hello: its models come from the listing
    // if it has them, its labels from the recording's utterances.
    session.hello = { labels: this.labels, models: this.meta.models ?? null, started: this.meta.started, source: "recording" };
    this.session = session;
    this.applied = 0;
  }

  /** Apply every message made at or before the playhead. */
  #advance() {
    const session = this.session;
    while (this.applied < this.messages.length && (this.messages[this.applied].t ?? 0) <= this.position) {
      const msg = this.messages[this.applied];
      if (msg.seq > session.lastSeq + 1) session.gaps.push({ after: session.lastSeq, upTo: msg.seq - 1 });
      if (msg.seq > session.lastSeq) session.apply(msg);
      this.applied += 1;
    }
    session.now = Math.max(session.now, this.position);
  }

  seek(seconds) {
    const target = Math.max(0, Math.min(this.duration, seconds));
    if (!this.session || target < this.position) this.#rebuild();
    this.position = target;
    this.#advance();
    this.onChange(this);
  }

  setSpeed(speed) {
    this.speed = speed;
    if (!Number.isFinite(speed)) this.seek(this.duration);
  }

  play() {
    if (this.position >= this.duration) this.seek(0);
    if (!Number.isFinite(this.speed)) {
      this.seek(this.duration);
      return;
    }
    this.playing = true;
    let last = performance.now();
    // 5 updates a second: smooth enough for a transcript, cheap for a 90-minute timeline.
    this.timer = setInterval(() => {
      const now = performance.now();
      this.seek(this.position + ((now - last) / 1000) * this.speed);
      last = now;
      if (this.position >= this.duration) this.pause();
    }, 200);
    this.onChange(this);
  }

  pause() {
    this.playing = false;
    clearInterval(this.timer);
    this.onChange(this);
  }
}
