"""Who is speaking, as a pipeline stage between the segmenter and the analyzer.

`SpeakerStage` wraps a segmenter and has its interface (push, flush, and whatever else the
segmenter offers, passed through), so the Session runs it like the segmenter itself, on the VAD
thread. On each finished utterance it
1. splits it where the voice changes (streamer/turns.py: a turn taken without a pause),
2. embeds each part (core/speakers.py) and asks the tracker who that is (core/attribution.py),
3. numbers the parts with the ids the feed publishes: one utterance of the segmenter may become
   two, so the stage numbers them itself, in order, and a partial carries the id its utterance's
   first part will get.
A partial gets the speaker its last seconds sound like, without teaching the tracker anything.
An eager end (the segmenter's preview of the utterance it will cut if the pause lasts) gets what
the utterance itself would get: the same split, and the tracker's answer for it without learning
from it; nothing else is attributed in between, so when the pause lasts the utterance gets exactly
that (the session checks: a different speaker drops the eager analysis). A preview the stage would
split in two gets no eager analysis. The preview's split and embeddings are kept for its utterance.

Events it does not know pass through unchanged, so the segmenter can grow new ones.
"""
from __future__ import annotations

import dataclasses
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from core.attribution import SpeakerTracker
from core.audio import SAMPLE_RATE
from streamer.segmenter import EagerEnd, SpeechUpdate, Utterance
from streamer.turns import find_turns

if TYPE_CHECKING:
    from core.speakers import SpeakerEncoder

PARTIAL_VOICE_S = 3.0  # a partial's speaker is judged on this much of its most recent audio


class Numbering:
    """Published utterance ids, 1, 2, 3, ... in the order utterances leave the stage."""

    def __init__(self) -> None:
        self._next = 1

    def peek(self) -> int:
        """The id the next utterance will get (a partial's)."""
        return self._next

    def take(self) -> int:
        self._next += 1
        return self._next - 1


class SpeakerStage:
    """A segmenter whose utterances are split at voice changes and carry their speaker."""

    def __init__(self, segmenter: Any, encoder: SpeakerEncoder, tracker: SpeakerTracker, change_similarity: float) -> None:
        self.segmenter = segmenter
        self.encoder = encoder
        self.tracker = tracker
        self.change_similarity = change_similarity
        self.ids = Numbering()
        self._kept: tuple[tuple[float, int], list[tuple[int, int, np.ndarray]]] | None = None

    def __getattr__(self, name: str) -> Any:  # position, speaking, take_peak_level_db, ...
        return getattr(self.segmenter, name)

    def push(self, frames: np.ndarray) -> list[Any]:
        return self._attribute(self.segmenter.push(frames))

    def flush(self) -> list[Any]:
        return self._attribute(self.segmenter.flush())

    def _attribute(self, events: list[Any]) -> list[Any]:
        out: list[Any] = []
        for event in events:
            if isinstance(event, Utterance):
                out += self.split(event)
            elif isinstance(event, EagerEnd):
                out += self._preview(event)
            elif isinstance(event, SpeechUpdate):
                out.append(self._update(event))
            else:
                out.append(event)
        return out

    def _pieces(self, utterance: Utterance) -> list[tuple[int, int, np.ndarray]]:
        """(begin, end, embedding) of each turn in the utterance, from the preview when it had them."""
        key = (utterance.start, len(utterance.audio))
        if self._kept is not None and self._kept[0] == key:
            return self._kept[1]
        audio = utterance.audio
        bounds = [0, *find_turns(self.encoder, audio, self.change_similarity), len(audio)]
        pieces = [(begin, end, self.encoder.embed(audio[begin:end])) for begin, end in pairwise(bounds)]
        self._kept = (key, pieces)
        return pieces

    def split(self, utterance: Utterance) -> list[Utterance]:
        """The utterance's turns, each with its published id and its speaker."""
        parts = []
        pieces = self._pieces(utterance)
        self._kept = None
        for begin, end, embedding in pieces:
            speaker = self.tracker.assign(embedding, (end - begin) / SAMPLE_RATE)
            last = end == len(utterance.audio)  # the ends keep the segmenter's times exactly
            parts.append(dataclasses.replace(
                utterance, id=self.ids.take(), start=utterance.start + begin / SAMPLE_RATE if begin else utterance.start,
                end=utterance.end if last else utterance.start + end / SAMPLE_RATE, audio=utterance.audio[begin:end],
                speech_end=utterance.speech_end if last else None, speaker=speaker.to_json()))
        return parts

    def _preview(self, eager: EagerEnd) -> list[EagerEnd]:
        pieces = self._pieces(eager.utterance)
        if len(pieces) != 1:
            return []
        ((begin, end, embedding),) = pieces
        speaker = self.tracker.preview(embedding, (end - begin) / SAMPLE_RATE)
        return [EagerEnd(dataclasses.replace(eager.utterance, id=self.ids.peek(), speaker=speaker.to_json()))]

    def _update(self, update: SpeechUpdate) -> SpeechUpdate:
        recent = update.audio_so_far[-int(PARTIAL_VOICE_S * SAMPLE_RATE):]
        speaker = self.tracker.peek(self.encoder.embed(recent)) if len(recent) else None
        return dataclasses.replace(update, id=self.ids.peek(), speaker=speaker.to_json() if speaker else None)


def describe(config: Any, segmenter: Any) -> dict[str, Any]:
    """hello's `speakers`: how speakers are told apart, and the enrolled roles (names, never voiceprints)."""
    if config.audio.channels == "split":
        return {"by": "channel", "max_speakers": 2, "enrolled": [], "channel_roles": list(config.speakers.channel_roles)}
    if isinstance(segmenter, SpeakerStage):
        return {"by": "voice", "max_speakers": segmenter.tracker.max_speakers, "enrolled": list(segmenter.tracker.enrolled)}
    return {"by": None, "max_speakers": 0, "enrolled": []}
