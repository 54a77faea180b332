"""Online speaker attribution: each utterance's voice embedding becomes a speaker id as it is published.

The daemon, `analyze` and `trainer predict` see utterances one at a time and must say who spoke
before the next one exists, so this is online clustering with a cap rather than clustering of a
whole file:

- a voice is compared with every speaker so far (cosine similarity to the speaker's centroid, the
  duration-weighted mean of its utterances);
- at or above `new_speaker_similarity` it joins the closest speaker; below it, a new speaker
  `S<n>` is opened while there are fewer than `max_speakers`; once there are that many, it goes
  to the closest one all the same, and its low similarity says how unsure that is (never a crash);
- an utterance shorter than MIN_NEW_SPEAKER_S (a "yes", "mm") is too short for a reliable
  embedding: it never opens a speaker (except the first) and counts for little in a centroid;
- an id, once published, is never changed or merged: what a dashboard has shown stays true.

Enrolled voiceprints (core/voiceprints.py) are speakers known from the start: each carries its
role, its centroid starts at the voiceprint (weighted as ENROLMENT_WEIGHT_S of speech, so the
room's microphone can shift it a little, not away) and it gets its id when it first speaks.
With `max_speakers = 2` and one enrolled role, the other voice takes the other role of a
counseling session: `client` (or `counselor` when `client` is the one enrolled).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_NEW_SPEAKER_S = 1.0
ENROLMENT_WEIGHT_S = 20.0
COUNSELING_ROLES = ("counselor", "client")


def unit(vector: np.ndarray) -> np.ndarray:
    """`vector` scaled to length 1 (a zero vector stays zero), as float32."""
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


@dataclass
class Attribution:
    """Who spoke one utterance, as the feed's `speaker` object."""

    id: str
    role: str | None
    similarity: float | None  # to the speaker's voice before this utterance; None = by channel, or the first of its voice

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role,
                "similarity": None if self.similarity is None else round(float(self.similarity), 3)}


@dataclass
class _Speaker:
    role: str | None
    total: np.ndarray  # duration-weighted sum of embeddings
    weight: float
    id: str | None = None  # given when first published

    @property
    def centroid(self) -> np.ndarray:
        return unit(self.total)


class SpeakerTracker:
    """Speaker ids for a sequence of utterance embeddings (see the module docstring). Thread-safe:
    the dashboard's enrolment adds a voiceprint while the pipeline attributes."""

    def __init__(self, max_speakers: int, new_speaker_similarity: float,
                 voiceprints: dict[str, np.ndarray] | None = None) -> None:
        if max_speakers < 1:
            raise ValueError("max_speakers must be at least 1 (0 means no tracker at all)")
        self.max_speakers = max_speakers
        self.threshold = new_speaker_similarity
        self._speakers: list[_Speaker] = []
        self._published = 0
        self._lock = threading.Lock()
        self.enrolled: list[str] = []
        for role, embedding in (voiceprints or {}).items():
            self.enrol(role, embedding)

    def enrol(self, role: str, embedding: np.ndarray) -> None:
        """Know `role`'s voice from now on. A voice already heard that matches it keeps its id and
        takes the role; re-enrolling a role moves its centroid towards the new voiceprint."""
        embedding = unit(np.asarray(embedding, dtype=np.float32))
        with self._lock:
            speaker = next((s for s in self._speakers if s.role == role), None)
            if speaker is None:
                heard = [s for s in self._speakers if s.role is None and s.id is not None]
                best = max(heard, key=lambda s: float(s.centroid @ embedding), default=None)
                if best is not None and float(best.centroid @ embedding) >= self.threshold:
                    speaker, best.role = best, role
            if speaker is None:
                self._speakers.append(_Speaker(role, embedding * ENROLMENT_WEIGHT_S, ENROLMENT_WEIGHT_S))
            else:
                speaker.total = speaker.total + embedding * ENROLMENT_WEIGHT_S
                speaker.weight += ENROLMENT_WEIGHT_S
            if role not in self.enrolled:
                self.enrolled.append(role)

    def _closest(self, embedding: np.ndarray) -> tuple[_Speaker | None, float]:
        scored = [(float(s.centroid @ embedding), i) for i, s in enumerate(self._speakers)]
        if not scored:
            return None, 0.0
        similarity, index = max(scored)
        return self._speakers[index], similarity

    def _role_of(self, speaker: _Speaker) -> str | None:
        if speaker.role is not None:
            return speaker.role
        roles = [s.role for s in self._speakers if s.role is not None]
        if self.max_speakers == 2 and len(roles) == 1:
            return COUNSELING_ROLES[1] if roles[0] != COUNSELING_ROLES[1] else COUNSELING_ROLES[0]
        return None

    def _choose(self, embedding: np.ndarray, duration_s: float) -> tuple[_Speaker | None, float | None]:
        """The speaker `embedding` belongs to (None: a new one) and its similarity (None: new)."""
        speaker, similarity = self._closest(embedding)
        opens = speaker is None or (
            similarity < self.threshold and len(self._speakers) < self.max_speakers and duration_s >= MIN_NEW_SPEAKER_S)
        return (None, None) if opens else (speaker, similarity)

    def assign(self, embedding: np.ndarray, duration_s: float) -> Attribution:
        """Attribute one published utterance and learn from it."""
        embedding = unit(np.asarray(embedding, dtype=np.float32))
        with self._lock:
            speaker, similarity = self._choose(embedding, duration_s)
            if speaker is None:
                speaker = _Speaker(None, np.zeros_like(embedding), 0.0)
                self._speakers.append(speaker)
            speaker.total = speaker.total + embedding * duration_s
            speaker.weight += duration_s
            if speaker.id is None:
                self._published += 1
                speaker.id = f"S{self._published}"
            return Attribution(speaker.id, self._role_of(speaker), similarity)

    def preview(self, embedding: np.ndarray, duration_s: float) -> Attribution:
        """What `assign` would answer now, learning nothing (an eager end's guess at its utterance:
        if nothing else is attributed first, `assign` answers the same)."""
        embedding = unit(np.asarray(embedding, dtype=np.float32))
        with self._lock:
            speaker, similarity = self._choose(embedding, duration_s)
            if speaker is None:
                return Attribution(f"S{self._published + 1}", self._role_of(_Speaker(None, embedding, 0.0)), None)
            return Attribution(speaker.id or f"S{self._published + 1}", self._role_of(speaker), similarity)

    def peek(self, embedding: np.ndarray) -> Attribution | None:
        """Who is most likely speaking now (for a `partial`), learning nothing; None before anyone
        was published or when the voice would open a new speaker."""
        embedding = unit(np.asarray(embedding, dtype=np.float32))
        with self._lock:
            speaker, similarity = self._closest(embedding)
            if speaker is None or speaker.id is None:
                return None
            if similarity < self.threshold and len(self._speakers) < self.max_speakers:
                return None
            return Attribution(speaker.id, self._role_of(speaker), similarity)


def channel_attribution(channel: int, roles: list[str]) -> Attribution:
    """Split channels: channel 0 is S1, channel 1 is S2, with `speakers.channel_roles` as roles."""
    return Attribution(f"S{channel + 1}", roles[channel] if channel < len(roles) and roles[channel] else None, None)
