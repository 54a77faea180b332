"""One utterance in, one feed message body out: Whisper, then the emotion bundle.

A session calls `analyze` and `partial` from its own analyzer thread. Several sessions of one
process (rooms, archive files in flight) share one copy of the models: `share()` turns the ASR into
a BatchedAsr (streamer/asr_queue.py) that decodes the utterances of all of them in batches, and
`sibling()` gives each session an analyzer of its own on those models, the emotion bundle guarded
by a lock (its text encoder's cache is not thread-safe). Bodies follow docs/feed.md (`utterance`,
`partial`); the session adds `type`, `session`, `seq`, `t` and `latency_ms.end_to_message`. The `speaker`
comes with the utterance from the stage before (streamer/speakers.py, streamer/channels.py).

What is said when there is nothing to say: a transcript Whisper's filters drop (no speech, a known
hallucination) leaves the utterance without text. With an audio model in the bundle the utterance
is still reported (emotion from the voice, text ""); without one `analyze` returns None and the
reason is counted in `filtered`, so the status line can show how much was dropped and why.

Partial results: the voice's emotion so far when the bundle has an audio model, and interim text
from the last PARTIAL_TEXT_S seconds of speech: a short-window transcription, measured at
0.19-0.32 s for the last 2-8 s on two shared cores (bench/latency_bench.py), so at most once per
PARTIAL_TEXT_INTERVAL_S per utterance: about a fifth of the CPU while someone speaks, and the
finished utterance, which comes at least vad.min_silence_ms after the last partial, rarely waits.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np

from core.asr import SAMPLE_RATE, Transcript, Whisper, load_whisper, transcribe
from core.bundle import Bundle, Prediction, Sample, load_bundle
from streamer.asr_queue import BatchedAsr
from streamer.config import Config
from streamer.segmenter import SpeechUpdate, Utterance

PARTIAL_TEXT_S = 6.0
PARTIAL_TEXT_INTERVAL_S = 2.0
# latency_ms key for each bundle role, as docs/feed.md names them
LATENCY_KEYS = {"text": "text_model", "audio": "audio_model", "multimodal": "multimodal_model", "stacker": "stack"}


class _Timed:
    """Wraps a bundle model to record how long its last prediction took (None = not run)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.ms: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _timed(self, method: str, *args: Any) -> np.ndarray:
        start = time.perf_counter()
        try:
            return getattr(self.model, method)(*args)
        finally:
            self.ms = (time.perf_counter() - start) * 1000.0

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        return self._timed("predict_proba", samples)

    def predict_proba_from(self, per_role: dict[str, np.ndarray]) -> np.ndarray:
        return self._timed("predict_proba_from", per_role)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _emotion(result: Any) -> dict[str, Any] | None:
    return result.to_json() if result is not None else None


class Analyzer:
    """Whisper plus the emotion bundle for one session (see the module docstring)."""

    def __init__(self, config: Config, whisper: Whisper | None = None, bundle: Bundle | None = None,
                 asr: BatchedAsr | None = None, bundle_lock: threading.Lock | None = None) -> None:
        self.config = config
        self.whisper = whisper or load_whisper(config.asr)
        bundle = bundle or load_bundle(config.emotion.bundle, device=config.emotion.device)
        self._bundle = bundle
        self.asr = asr  # None: this analyzer calls Whisper itself
        self._bundle_lock = bundle_lock or threading.Lock()
        self._timed = {role: _Timed(model) for role, model in bundle.models.items()}
        stacker = None
        if bundle.stacker is not None:
            stacker = self._timed["stacker"] = _Timed(bundle.stacker)
        self.bundle = dataclasses.replace(
            bundle, models={role: self._timed[role] for role in bundle.models}, stacker=stacker
        )
        self.filtered: Counter[str] = Counter()  # utterances without a message, by reason
        self.analyzed = 0  # utterances that produced a message
        self._last_partial_text: tuple[int, float] = (0, 0.0)  # (utterance id, stream time) of the last interim text

    def share(self) -> "Analyzer":
        """Let several sessions use these models at once: ASR through one batching thread."""
        if self.asr is None:
            self.asr = BatchedAsr(self.whisper)
        return self

    def sibling(self, config: Config | None = None) -> "Analyzer":
        """An analyzer for another session (its own `config`, e.g. another room's language) on the
        same loaded models, with counters of its own; safe to call from its own thread after share()."""
        return Analyzer(config or self.config, whisper=self.whisper, bundle=self._bundle, asr=self.asr,
                        bundle_lock=self._bundle_lock)

    def close(self) -> None:
        if self.asr is not None:
            self.asr.close()

    @property
    def has_audio_model(self) -> bool:
        return any(role in self.bundle.models for role in ("audio", "multimodal"))

    def models(self) -> dict[str, str | None]:
        """What `hello` shows: the ASR model in words, and each bundle role's kind or None."""
        return {"asr": self.whisper.describe(self.config.asr.short_window), **self.bundle.loaded()}

    def _transcribe(self, audio: np.ndarray, interim: bool = False) -> Transcript:
        if self.asr is not None:
            return self.asr.transcribe(audio, self.config.asr.language, self.config.asr, interim=interim)
        return transcribe(self.whisper, audio, self.config.asr.language, self.config.asr)

    def _predict(self, sample: Sample) -> tuple[Prediction, dict[str, float | None]]:
        for timed in self._timed.values():
            timed.ms = None
        start = time.perf_counter()
        with self._bundle_lock:
            prediction = self.bundle.predict([sample])[0]
        latency = {"emotion": _ms((time.perf_counter() - start) * 1000.0)}
        latency.update({LATENCY_KEYS[role]: _ms(timed.ms) for role, timed in self._timed.items()})
        return prediction, latency

    def analyze(self, utt: Utterance) -> dict[str, Any] | None:
        """The body of an `utterance` message, or None when there is nothing to report."""
        start = time.perf_counter()
        transcript = self._transcribe(utt.audio)
        if transcript.filtered:
            self.filtered[transcript.filtered] += 1
            if not self.has_audio_model:
                return None
        prediction, latency = self._predict(Sample(text=transcript.text or None, audio=utt.audio, id=str(utt.id)))
        if not prediction.used:  # no model could run (e.g. a text-only bundle and no text)
            self.filtered["no_input"] += 1
            return None
        self.analyzed += 1
        return {
            "utterance_id": utt.id,
            "start": round(utt.start, 3),
            "end": round(utt.end, 3),
            "speaker": utt.speaker,
            "text": transcript.text,
            "emotion": {"label": prediction.label, "probs": prediction.probs},
            "text_emotion": _emotion(prediction.text),
            "audio_emotion": _emotion(prediction.audio),
            "multimodal_emotion": _emotion(prediction.multimodal),
            "used": prediction.used,
            "asr": {**transcript.asr_json(), "filtered": transcript.filtered},
            "latency_ms": {
                "asr": _ms(transcript.duration_ms),
                **latency,
                "total": _ms((time.perf_counter() - start) * 1000.0),
            },
        }

    def partial(self, update: SpeechUpdate) -> dict[str, Any] | None:
        """The body of a `partial` message for speech in progress, or None when there is nothing new."""
        audio_emotion = None
        if "audio" in self.bundle.models:
            prediction, _latency = self._predict(Sample(audio=update.audio_so_far, id=str(update.id)))
            audio_emotion = _emotion(prediction.audio)
        text = None
        last_id, last_time = self._last_partial_text
        if update.id != last_id or update.now - last_time >= PARTIAL_TEXT_INTERVAL_S:
            self._last_partial_text = (update.id, update.now)
            tail = update.audio_so_far[-int(PARTIAL_TEXT_S * SAMPLE_RATE) :]
            text = self._transcribe(tail, interim=True).text or None
        if text is None and audio_emotion is None:
            return None
        return {
            "utterance_id": update.id,
            "start": round(update.start, 3),
            "end": round(update.now, 3),
            "speaker": update.speaker,
            "text": text,
            "audio_emotion": audio_emotion,
        }
