// Runs on the audio thread: takes the microphone's mono float samples at the context's rate,
// resamples them to 16 kHz when the browser did not (windowed-sinc interpolation with the cutoff
// below the new Nyquist, so no aliasing), and posts PCM16 frames of 40 ms with their RMS level.

const OUT_RATE = 16000;
const FRAME = 640; // 40 ms at 16 kHz: 1280 bytes per WebSocket frame
const HALF = 16; // filter taps on each side of an output sample

function sinc(x) {
  return x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
}

class Pcm16Sender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.cutoff = Math.min(1, OUT_RATE / sampleRate) * 0.92;
    this.history = new Float32Array(2 * HALF);
    this.pos = HALF; // where the next output sample falls, in history's index space
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.energy = 0;
  }

  push(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.energy += s * s;
    this.frame[this.filled++] = s < 0 ? s * 32768 : s * 32767;
    if (this.filled === FRAME) {
      const pcm = this.frame.buffer;
      this.port.postMessage({ pcm, rms: Math.sqrt(this.energy / FRAME) }, [pcm]);
      this.frame = new Int16Array(FRAME);
      this.filled = 0;
      this.energy = 0;
    }
  }

  process(inputs) {
    const input = inputs[0]?.[0];
    if (!input) return true;
    if (this.step === 1) {
      for (let i = 0; i < input.length; i++) this.push(input[i]);
      return true;
    }
    const buf = new Float32Array(this.history.length + input.length);
    buf.set(this.history);
    buf.set(input, this.history.length);
    let pos = this.pos;
    while (pos + HALF < buf.length) {
      const i0 = Math.floor(pos);
      const frac = pos - i0;
      let acc = 0;
      let weights = 0;
      for (let k = -HALF + 1; k <= HALF; k++) {
        const d = k - frac;
        const w = sinc(d * this.cutoff) * (0.5 + 0.5 * Math.cos((Math.PI * d) / HALF));
        acc += buf[i0 + k] * w;
        weights += w;
      }
      this.push(acc / weights);
      pos += this.step;
    }
    const keep = Math.floor(pos) - HALF;
    this.history = buf.slice(keep);
    this.pos = pos - keep;
    return true;
  }
}

registerProcessor("pcm16-sender", Pcm16Sender);
