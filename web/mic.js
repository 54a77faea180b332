// This browser as the daemon's microphone: getUserMedia -> AudioWorklet (mic-worklet.js) ->
// 16 kHz PCM16 little-endian frames of 40 ms -> ws://HOST:PORT/mic. The context is asked for
// 16 kHz so the browser's own resampler does the work; where a browser refuses that (Firefox
// cannot connect a mic to a context of another rate), the worklet resamples instead. If the
// socket drops, capture keeps going and the socket comes back with backoff; frames in between
// are counted as lost, never queued without bound.

const MAX_BUFFERED = 256 * 1024; // bytes waiting in the socket before frames are dropped

export class MicError extends Error {}

function explain(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this page in the browser's site settings (the icon left of the address), then press the button again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in or pick one in the system's sound settings, then press the button again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is in use by another program or could not be opened. Close the other program, then press the button again.";
    default:
      return `The microphone could not be started (${error?.name ?? "error"}: ${error?.message ?? error}).`;
  }
}

export class BrowserMic {
  constructor({ url, token, onState, onReply = null }) {
    this.url = new URL(url);
    if (token) this.url.searchParams.set("token", token);
    this.onState = onState; // ({text}) for the button's status line, ({error}) for the daemon's complaints
    this.onReply = onReply; // every JSON message from the daemon (enrolment answers), when given
    this.active = false;
    this.frames = 0;
    this.lost = 0;
    this.attempt = 0;
  }

  async start() {
    this.refusal = null;
    this.frames = 0;
    this.lost = 0;
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new MicError("Browsers only allow the microphone on https:// or on this computer (http://127.0.0.1 or http://localhost). Open the dashboard that way, or put the daemon behind https.");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      throw new MicError(explain(error));
    }
    this.stream = stream;
    try {
      await this.#openSocket();
      this.context = await this.#capture(stream);
      // The daemon may accept the socket and close it at once (no --source browser, or another
      // browser already streaming): that is a refusal, not a drop to reconnect from.
      if (this.refusal) throw new MicError(this.refusal);
    } catch (error) {
      this.stop();
      throw error instanceof MicError ? error : new MicError(explain(error));
    }
    this.active = true;
    this.#report();
  }

  async #capture(stream) {
    let context = new AudioContext({ sampleRate: 16000 });
    let source;
    try {
      source = context.createMediaStreamSource(stream);
    } catch {
      await context.close();
      context = new AudioContext();
      source = context.createMediaStreamSource(stream);
    }
    await context.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(context, "pcm16-sender", {
      channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
    });
    node.port.onmessage = ({ data }) => this.#send(data);
    const mute = context.createGain(); // keeps the graph pulled without playing the mic back
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(context.destination);
    await context.resume();
    this.inputRate = context.sampleRate;
    return context;
  }

  #openSocket() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        this.attempt = 0;
        resolve();
      };
      ws.onmessage = ({ data }) => {
        // The daemon answers a frame it cannot use with an `error` that says why.
        try {
          const msg = JSON.parse(data);
          if (this.onReply) this.onReply(msg);
          else if (msg.type === "error") this.onState({ error: msg.message });
        } catch {
          // not JSON: nothing the schema defines on /mic
        }
      };
      ws.onclose = (event) => {
        if (ws !== this.ws) return;
        const why = event.reason || (event.code === 1006 ? "connection failed" : `code ${event.code}`);
        if (!this.active) {
          this.refusal = `The daemon did not accept the microphone stream at ${this.url.origin}/mic: ${why}.`;
          reject(new MicError(this.refusal));
          return;
        }
        const delay = Math.min(8000, 500 * 2 ** this.attempt++);
        this.onState({ text: `microphone stream closed (${why}); retrying in ${Math.ceil(delay / 1000)} s…` });
        this.retry = setTimeout(() => this.#openSocket().catch(() => {}), delay);
      };
    });
  }

  #send({ pcm, rms }) {
    const ws = this.ws;
    if (!this.active) return;
    if (ws?.readyState === WebSocket.OPEN && ws.bufferedAmount < MAX_BUFFERED) {
      ws.send(pcm);
      this.frames += 1;
    } else {
      this.lost += 1;
    }
    this.peak = Math.max(this.peak ?? 0, rms); // the loudest frame since the last report, like a meter's hold
    if ((this.frames + this.lost) % 10 === 0) this.#report();
  }

  #report() {
    const seconds = (this.frames * 0.04).toFixed(0);
    const db = 20 * Math.log10(Math.max(this.peak ?? 0, 1e-6));
    this.peak = 0;
    const level = db < -100 ? " · silent" : ` · ${db.toFixed(0)} dB`;
    const lost = this.lost ? ` · ${(this.lost * 0.04).toFixed(1)} s lost` : "";
    this.onState({ text: `● Live ${seconds} s sent${level}${lost}` });
  }

  /** Send a JSON message on the audio socket (the end of an enrolment's audio). */
  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  stop() {
    this.active = false;
    clearTimeout(this.retry);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.context?.close();
    this.context = null;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
  }
}
