"""Cuts a 16 kHz mono stream into utterances with Silero VAD; plain code, no I/O, no threads.

The caller pushes frames of any length as they arrive and gets events back:

- `SpeechUpdate` about once a second while someone speaks (for the feed's `partial` messages);
- `Utterance` when speech ends (vad.min_silence_ms of silence), when it reaches
  vad.max_utterance_s, or at `flush()`;
- `EagerEnd` once a pause has lasted vad.eager_silence_ms (when set): the Utterance that will be
  emitted, exactly (same id, start, end, audio), if the silence goes on to min_silence_ms. The
  session can start analysing it early; if speech resumes first, the later Utterance differs.

The rules follow faster-whisper's offline `get_speech_timestamps` so live and file results agree:
speech starts at a chunk whose probability reaches vad.threshold and ends once the probability has
stayed below threshold - 0.15 for min_silence_ms; bursts shorter than min_speech_ms are dropped;
utterances are padded by speech_pad_ms on both sides (never overlapping the previous one).
Speech that goes on past max_utterance_s is cut at the pause it is in, or else at the quietest
32 ms of its last second, so words are rarely split; the rest continues as the next utterance.

Bad input: NaN or infinite samples, or frames that are not one-dimensional floats, raise
`BadAudio` before anything of the block is consumed (position and state are unchanged). The
caller decides what to do: report it and drop the block, or repair it (np.nan_to_num) and push
again. Silently replacing samples would hide a broken source.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from core.audio import SAMPLE_RATE
from streamer.config import VadConfig
from streamer.vad import CHUNK, SileroVad

UPDATE_INTERVAL_S = 1.0  # SpeechUpdate cadence while speaking
LEVEL_WINDOW_S = 0.3  # the short-term level is the RMS of this much recent audio
SPLIT_SEARCH_S = 1.0  # a long utterance is cut at the quietest chunk of its last this-many seconds
NEG_THRESHOLD_GAP = 0.15  # as faster-whisper: speech ends below threshold - 0.15
LEVEL_FLOOR_DB = -120.0


class BadAudio(ValueError):
    """A pushed block is not usable audio; nothing of it was consumed."""


@dataclass
class Utterance:
    """A finished utterance. Times are seconds from the start of the stream; audio spans
    exactly [start, end) and includes the padding; `speech_end` is where the VAD heard the speech
    stop (end without the trailing padding), from which latency counts."""

    id: int
    start: float
    end: float
    audio: np.ndarray
    speech_end: float | None = None
    speaker: dict | None = None  # the feed's `speaker` object, set by streamer/speakers.py

    def same_as(self, other: "Utterance") -> bool:
        """The same cut of the same audio (an eager end that came true)."""
        same = (self.id, self.start, self.end, self.speaker) == (other.id, other.start, other.end, other.speaker)
        return same and np.array_equal(self.audio, other.audio)


@dataclass
class SpeechUpdate:
    """Speech still in progress: utterance `id` began at `start`; `audio_so_far` spans [start, now)."""

    id: int
    start: float
    now: float
    audio_so_far: np.ndarray
    speaker: dict | None = None  # who seems to be speaking, set by streamer/speakers.py


@dataclass
class EagerEnd:
    """A pause of vad.eager_silence_ms: `utterance` is what will be emitted if the pause lasts."""

    utterance: Utterance


Event = Utterance | SpeechUpdate | EagerEnd


class Segmenter:
    """Streaming VAD segmentation of one session. See the module docstring for the rules."""

    def __init__(self, vad_cfg: VadConfig, vad: SileroVad | None = None) -> None:
        if not 0.0 < vad_cfg.threshold < 1.0:
            raise ValueError(f"vad.threshold must be between 0 and 1, got {vad_cfg.threshold}")
        if vad_cfg.max_utterance_s < 2 * SPLIT_SEARCH_S:
            raise ValueError(f"vad.max_utterance_s must be at least {2 * SPLIT_SEARCH_S:g} s, got {vad_cfg.max_utterance_s}")
        if min(vad_cfg.min_silence_ms, vad_cfg.speech_pad_ms, vad_cfg.min_speech_ms) < 0:
            raise ValueError("vad.min_silence_ms, speech_pad_ms and min_speech_ms must not be negative")
        self.cfg = vad_cfg
        self._vad = vad or SileroVad()  # a shared one (tests, replays) starts this stream afresh
        self._vad.reset()
        self._threshold = vad_cfg.threshold
        self._neg_threshold = max(vad_cfg.threshold - NEG_THRESHOLD_GAP, 0.01)
        self._pad = int(vad_cfg.speech_pad_ms * SAMPLE_RATE / 1000)
        self._min_silence = int(vad_cfg.min_silence_ms * SAMPLE_RATE / 1000)
        # An eager end needs the padded end already in the buffer, so it is never sooner than the
        # padding (streamer/config.py checks eager_silence_ms >= speech_pad_ms).
        self._eager_silence = int(vad_cfg.eager_silence_ms * SAMPLE_RATE / 1000) if vad_cfg.eager_silence_ms else 0
        self._min_speech = int(vad_cfg.min_speech_ms * SAMPLE_RATE / 1000)
        self._max_samples = int(vad_cfg.max_utterance_s * SAMPLE_RATE)
        # Audio kept: everything from `_buffer_start` (a sample index) to the end of input.
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0
        self._pending = 0  # samples at the end of the buffer not yet seen by the VAD
        self._vad_pos = 0  # sample index up to which the VAD has run (a multiple of CHUNK)
        self._levels: deque[float] = deque(maxlen=max(1, round(LEVEL_WINDOW_S * SAMPLE_RATE / CHUNK)))
        self._peak_mean_square = 0.0  # highest short-term mean square since the last take_peak_level_db()
        self._chunk_energy: deque[tuple[int, float]] = deque(maxlen=round(SPLIT_SEARCH_S * SAMPLE_RATE / CHUNK))
        self._next_id = 1
        self._last_end = 0  # end sample of the last emitted utterance (padding never overlaps it)
        self._reset_speech()

    def _reset_speech(self) -> None:
        self._speech_start: int | None = None  # first speech sample of the current utterance
        self._temp_end = 0  # where silence began inside the current utterance (0 = none)
        self._eager_sent = 0  # the pause (its temp_end) an EagerEnd was emitted for
        self._last_update = 0

    # --- public state -------------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self._speech_start is not None

    @property
    def position(self) -> float:
        """Seconds of audio consumed."""
        return (self._buffer_start + len(self._buffer)) / SAMPLE_RATE

    @property
    def level_db(self) -> float:
        """Short-term level: RMS of the last ~0.3 s in dBFS (LEVEL_FLOOR_DB for silence)."""
        return _db(self._short_term_mean_square())

    def take_peak_level_db(self) -> float:
        """The highest short-term level (as `level_db`) since the previous call, then start afresh;
        LEVEL_FLOOR_DB when no audio came in between. For status lines sent every second or so, so a
        short sound between two of them still shows.

        May be called from another thread than `push` (the streamer calls it from its event loop):
        a chunk measured during the call counts towards this peak or the next, and what is returned
        is always a level that was measured."""
        peak, self._peak_mean_square = self._peak_mean_square, 0.0
        return _db(peak)

    def _short_term_mean_square(self) -> float:
        return sum(self._levels) / len(self._levels) if self._levels else 0.0

    # --- input --------------------------------------------------------------------------------

    def push(self, frames: np.ndarray) -> list[Event]:
        """Consume 16 kHz mono float32 samples (any count); return the events they complete."""
        frames = _checked(frames, self.position)
        self._buffer = np.concatenate([self._buffer, frames])
        self._pending += len(frames)
        usable = self._pending // CHUNK * CHUNK
        if usable == 0:
            return []
        first = len(self._buffer) - self._pending
        chunks = self._buffer[first : first + usable].reshape(-1, CHUNK)
        self._pending -= usable
        probs = self._vad(chunks)
        mean_squares = np.mean(np.square(chunks, dtype=np.float64), axis=1)
        events: list[Event] = []
        for prob, mean_square in zip(probs.tolist(), mean_squares.tolist()):
            events += self._step(prob, mean_square)
        self._trim_buffer()
        return events

    def flush(self) -> list[Event]:
        """End of input: close the utterance in progress (if long enough) and start afresh."""
        events: list[Event] = []
        end = self._buffer_start + len(self._buffer)
        if self._speech_start is not None:
            speech_end = self._temp_end or end
            if speech_end - self._speech_start >= self._min_speech:
                events.append(self._emit(self._speech_start, speech_end, pad_end=True))
        self._reset_speech()
        self._vad.reset()
        self._vad_pos = end  # the unseen tail (< 32 ms) is dropped from the VAD's view
        self._pending = 0
        self._trim_buffer()
        return events

    # --- the state machine, one 32 ms chunk at a time -----------------------------------------

    def _step(self, prob: float, mean_square: float) -> list[Event]:
        chunk_start = self._vad_pos
        self._vad_pos += CHUNK
        self._levels.append(mean_square)
        short_term = self._short_term_mean_square()
        if short_term > self._peak_mean_square:
            self._peak_mean_square = short_term
        self._chunk_energy.append((chunk_start, mean_square))
        if self._speech_start is None:
            if prob >= self._threshold:
                self._speech_start = chunk_start
                self._last_update = chunk_start
            return []

        events: list[Event] = []
        if prob >= self._threshold:
            self._temp_end = 0
        elif prob < self._neg_threshold:
            if not self._temp_end:
                self._temp_end = chunk_start
            if self._vad_pos - self._temp_end >= self._min_silence:
                if self._temp_end - self._speech_start >= self._min_speech:
                    events.append(self._emit(self._speech_start, self._temp_end, pad_end=True))
                self._reset_speech()
                return events
            if (self._eager_silence and self._eager_sent != self._temp_end
                    and self._vad_pos - self._temp_end >= self._eager_silence
                    and self._temp_end - self._speech_start >= self._min_speech):
                self._eager_sent = self._temp_end
                events.append(EagerEnd(self._preview(self._speech_start, self._temp_end)))

        if self._utterance_span(self._vad_pos) >= self._max_samples:
            if self._temp_end:  # already pausing: end there, as if the pause had been long enough
                events.append(self._emit(self._speech_start, self._temp_end, pad_end=True))
                self._reset_speech()
                return events
            cut = self._quietest_point()
            events.append(self._emit(self._speech_start, cut, pad_end=False))
            self._speech_start, self._last_update = cut, cut
        elif (
            not self._temp_end  # not during a pause that may end the utterance
            and self._vad_pos - self._last_update >= UPDATE_INTERVAL_S * SAMPLE_RATE
            and self._vad_pos - self._speech_start >= self._min_speech
        ):
            self._last_update = self._vad_pos
            begin = self._padded_start(self._speech_start)
            events.append(SpeechUpdate(self._next_id, begin / SAMPLE_RATE, self._vad_pos / SAMPLE_RATE, self._slice(begin, self._vad_pos)))
        return events

    def _utterance_span(self, end: int) -> int:
        return end + self._pad - self._padded_start(self._speech_start)

    def _quietest_point(self) -> int:
        """Start of the quietest chunk in the last second (ties: the latest), as a cut point."""
        assert self._speech_start is not None
        candidates = [(energy, -start) for start, energy in self._chunk_energy if start > self._speech_start]
        if not candidates:
            return self._vad_pos
        _energy, negative_start = min(candidates)
        return -negative_start

    def _padded_start(self, speech_start: int) -> int:
        return max(speech_start - self._pad, self._last_end, self._buffer_start, 0)

    def _padded_end(self, speech_end: int) -> int:
        return min(speech_end + self._pad, self._buffer_start + len(self._buffer))

    def _preview(self, speech_start: int, speech_end: int) -> Utterance:
        """The padded utterance [speech_start, speech_end) as _emit would make it now, without emitting it."""
        begin, end = self._padded_start(speech_start), self._padded_end(speech_end)
        return Utterance(self._next_id, begin / SAMPLE_RATE, end / SAMPLE_RATE, self._slice(begin, end), speech_end / SAMPLE_RATE)

    def _emit(self, speech_start: int, speech_end: int, pad_end: bool) -> Utterance:
        begin = self._padded_start(speech_start)
        end = self._padded_end(speech_end) if pad_end else speech_end
        utterance = Utterance(self._next_id, begin / SAMPLE_RATE, end / SAMPLE_RATE, self._slice(begin, end),
                              speech_end / SAMPLE_RATE)
        self._next_id += 1
        self._last_end = end
        return utterance

    def _slice(self, begin: int, end: int) -> np.ndarray:
        return self._buffer[begin - self._buffer_start : end - self._buffer_start].copy()

    def _trim_buffer(self) -> None:
        """Keep only what a future utterance can still need: its left padding, or the speech so far."""
        end = self._buffer_start + len(self._buffer)
        keep_from = self._speech_start if self._speech_start is not None else self._vad_pos
        keep_from = max(0, min(keep_from - self._pad, end - self._pending))
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from


def _db(mean_square: float) -> float:
    return max(LEVEL_FLOOR_DB, 10 * float(np.log10(mean_square))) if mean_square > 0 else LEVEL_FLOOR_DB


def _checked(frames: np.ndarray, position: float) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 1:
        raise BadAudio(
            f"expected mono samples (one dimension), got shape {frames.shape} at {position:.2f} s; "
            "downmix and resample to 16 kHz before pushing"
        )
    if not np.issubdtype(frames.dtype, np.floating):
        raise BadAudio(f"expected float samples in [-1, 1], got {frames.dtype} at {position:.2f} s; divide PCM16 by 32768")
    frames = frames.astype(np.float32, copy=False)
    bad = ~np.isfinite(frames)
    if bad.any():
        raise BadAudio(
            f"{int(bad.sum())} of {len(frames)} samples are NaN or infinite (first at {position + np.argmax(bad) / SAMPLE_RATE:.2f} s); "
            "the block was not consumed: drop it, or repair it with np.nan_to_num and push again"
        )
    return frames
