// Sessions as the dashboard knows them, built only from numbered feed messages applied in seq
// order. Keeping the order check here (rather than in the socket code) is what makes the
// timeline gap-free and duplicate-free across reconnects, server restarts and replays: a message
// is applied only if it is exactly the next seq of its session.

export class Session {
  constructor(id, origin) {
    this.id = id;
    this.origin = origin; // "live" (from /ws) or "recorded" (a feed.jsonl replayed here)
    this.hello = null;
    this.lastSeq = 0;
    this.messages = []; // every numbered message, in seq order: the export's complete feed
    this.utterances = new Map(); // utterance_id -> utterance message
    this.partial = null;
    this.status = null;
    this.end = null;
    this.errors = [];
    this.gaps = []; // [{after, upTo}] ranges the server could not resend; shown, never hidden
    this.now = 0; // latest session time seen
  }

  /** Apply the next numbered message (the caller has checked its seq). */
  apply(msg) {
    this.lastSeq = msg.seq;
    this.messages.push(msg);
    this.now = Math.max(this.now, msg.t ?? 0, msg.end ?? 0);
    switch (msg.type) {
      case "utterance":
        if (!Number.isFinite(msg.start) || !Number.isFinite(msg.end) || typeof msg.emotion?.probs !== "object") {
          // Numbered all the same (so resume stays exact), but not drawn as a guess.
          this.errors.push({ code: "bad_utterance", message: `utterance ${msg.utterance_id} (seq ${msg.seq}) lacks start, end or emotion and is not shown; check that the daemon and dashboard speak the same feed schema` });
          break;
        }
        this.utterances.set(msg.utterance_id, msg);
        if (this.partial?.utterance_id === msg.utterance_id) this.partial = null;
        break;
      case "partial":
        this.partial = msg;
        break;
      case "status":
        this.status = msg;
        break;
      case "error":
        this.errors.push(msg);
        break;
      case "session_end":
        this.end = msg;
        this.partial = null;
        this.now = Math.max(this.now, msg.duration ?? 0);
        break;
    }
  }

  /** Utterances in time order. */
  list() {
    return [...this.utterances.values()].sort((a, b) => a.start - b.start || a.utterance_id - b.utterance_id);
  }

  get duration() {
    return this.now;
  }
}

export class Store {
  constructor(onChange) {
    this.sessions = new Map();
    this.onChange = onChange; // (session, msg) after anything changed
  }

  session(id, origin = "live") {
    if (!this.sessions.has(id)) this.sessions.set(id, new Session(id, origin));
    return this.sessions.get(id);
  }

  /**
   * Take one message from the feed. Returns what happened, so the socket code can react:
   * "reply" (hello / a per-client error: not numbered), "applied", "duplicate" (already seen:
   * dropped), or "gap" (a seq is missing before this one: nothing applied; resume from lastSeq).
   */
  receive(msg, origin = "live") {
    if (typeof msg?.session !== "string" || !Number.isInteger(msg?.seq)) return "invalid";
    const session = this.session(msg.session, origin);
    if (msg.reply || msg.type === "hello") {
      if (msg.type === "hello") session.hello = msg;
      else session.errors.push(msg);
      this.onChange?.(session, msg);
      return "reply";
    }
    if (msg.seq <= session.lastSeq) return "duplicate";
    if (msg.seq > session.lastSeq + 1) return "gap";
    session.apply(msg);
    this.onChange?.(session, msg);
    return "applied";
  }

  /** Apply a message across a gap the server cannot fill, recording the gap for the user. */
  acceptGap(msg) {
    const session = this.session(msg.session);
    session.gaps.push({ after: session.lastSeq, upTo: msg.seq - 1 });
    session.apply(msg);
    this.onChange?.(session, msg);
  }
}
