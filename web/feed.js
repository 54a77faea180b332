// The live connection to the daemon's feed (ws://HOST:PORT/ws). It never gives up: on any close
// it retries with exponential backoff (0.5 s doubling to 15 s, jittered so a room of dashboards
// does not reconnect in lockstep) and resumes with ?since=<last seq applied>, so the store sees
// every numbered message exactly once. A silent connection (a dropped network often looks like
// one) is probed with a ping and replaced if no answer comes.

const BASE_MS = 500;
const MAX_MS = 15000;
const QUIET_MS = 5000; // no message for this long (status comes every second): send a ping
const PONG_MS = 4000; // no answer to the ping for this long: the connection is dead
const GAP_RETRIES = 3; // resumes tried before a hole the server cannot fill is accepted (and shown)

export class FeedClient {
  constructor({ url, token, store, onState }) {
    this.url = url;
    this.token = token;
    this.store = store;
    this.onState = onState;
    this.liveId = null; // the session the daemon is serving
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.gapTries = new Map();
    this.lastMessageAt = 0;
    this.pingSentAt = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#connect();
    this.watchdog = setInterval(() => this.#checkQuiet(), 1000);
    window.addEventListener("online", () => this.#reconnectNow("network back"));
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.timer);
    this.ws?.close();
  }

  #since() {
    return this.liveId ? this.store.session(this.liveId).lastSeq : 0;
  }

  #connect() {
    clearTimeout(this.timer);
    const since = this.#since();
    const url = new URL(this.url);
    url.searchParams.set("since", String(since));
    if (this.token) url.searchParams.set("token", this.token);
    this.asked = { session: this.liveId, since };
    const ws = new WebSocket(url);
    this.ws = ws;
    this.onState({ state: "connecting", attempt: this.attempt, since });
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastMessageAt = performance.now();
      this.pingSentAt = 0;
      this.onState({ state: "connected", attempt: this.attempt, since });
      this.attempt = 0;
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this.#onMessage(event.data);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws || this.stopped) return;
      this.#retryLater(event.reason || (event.code === 1006 ? "connection lost" : `closed (${event.code})`));
    };
  }

  #retryLater(reason) {
    const delay = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.onState({ state: "reconnecting", attempt: this.attempt, retryAt: Date.now() + delay, reason });
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #reconnectNow(reason) {
    if (this.stopped) return;
    const old = this.ws;
    this.ws = null; // its close event is ignored from here on
    old?.close();
    this.onState({ state: "reconnecting", attempt: this.attempt, retryAt: Date.now(), reason });
    this.#connect();
  }

  #checkQuiet() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    if (this.pingSentAt && now - this.pingSentAt > PONG_MS) {
      this.#reconnectNow("no answer from the daemon");
    } else if (!this.pingSentAt && now - this.lastMessageAt > QUIET_MS) {
      this.pingSentAt = now;
      ws.send(JSON.stringify({ type: "ping" }));
    }
  }

  #onMessage(data) {
    this.lastMessageAt = performance.now();
    this.pingSentAt = 0;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not JSON: nothing the schema allows, nothing to show
    }
    if (msg.type === "pong") return;
    if (msg.type === "hello") {
      const resumedOther = this.asked.since > 0 && msg.session !== this.asked.session;
      this.liveId = msg.session;
      this.store.receive(msg);
      // ?since=N named a seq of another session; this one must be fetched from its start.
      if (resumedOther) this.#reconnectNow("new session");
      return;
    }
    const result = this.store.receive(msg);
    if (result !== "gap") return;
    const key = `${msg.session}:${this.store.session(msg.session).lastSeq}`;
    const tries = (this.gapTries.get(key) ?? 0) + 1;
    this.gapTries.set(key, tries);
    if (tries <= GAP_RETRIES) this.#reconnectNow("missing messages");
    else this.store.acceptGap(msg);
  }
}
