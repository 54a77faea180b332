"""The rules that turn five AI Hub annotations into one training label (the label vocabulary
itself, LABELS, is core/labels.py).

Label rules are pure functions of the five (emotion, intensity) pairs, so they can be golden-
tested against the seed report's worked rows and swapped from the command line:

- ``seed`` (the seed report's rule): sum each emotion's intensities over the five annotators; the
  largest sum wins; on a tie, the tied emotion that the most annotators chose wins. Only emotions
  at least one annotator chose are candidates, so an all-neutral row (neutral's intensity is 0,
  so its sum is 0) still comes out neutral. Neutral can only win when every other chosen
  emotion also sums to 0; in particular one annotator's "happiness 1" outweighs four "neutral 0"
  (the seed's row 10 comes out happiness). Rows whose winner is not in LABELS are dropped.
- ``majority``: the emotion most annotators chose, kept only if at least ``min_agreement`` of
  the five chose it and it is in LABELS.
- ``all7``: the seed rule without dropping disgust, fear and surprise.

A tie that survives the tie-breaks (e.g. angry 2 + sadness 2 + three neutral 0) goes to the tied
emotion that the lowest-numbered annotator chose: deterministic, independent of label order, and
reported as ``unresolved`` so the caller can count those rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.labels import LABELS

# All seven emotions AI Hub annotators could choose (dataset 263).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

RULES: tuple[str, ...] = ("seed", "majority", "all7")

# Intensities in dataset 263 are 0 (none / neutral), 1 or 2, as in every row the seed shows.
MAX_INTENSITY = 2

# A truncated name must keep this many letters to be trusted ("sad" -> sadness, "s" -> unknown).
MIN_PREFIX = 3

Annotation = tuple[str, int]  # (emotion in EMOTIONS, intensity 0..MAX_INTENSITY)


@dataclass(frozen=True)
class NameMatch:
    """A canonical emotion for a raw cell; ``truncated`` marks a prefix match worth counting."""

    emotion: str
    truncated: bool


@dataclass(frozen=True)
class Decision:
    """What a rule made of one row: a label, or None with the reason the row is dropped."""

    label: str | None
    drop_reason: str | None = None
    unresolved_tie: bool = False


def normalise_emotion(raw: str) -> NameMatch | None:
    """Map a cell such as ``" Happiness"``, ``"HAPPINESS"`` or ``"happines:"`` to an emotion.

    Case, spaces and punctuation are ignored. A truncation is accepted only when it keeps at
    least MIN_PREFIX letters and is the start of exactly one of the seven names; anything else
    is unknown (None) rather than guessed.
    """
    key = re.sub(r"[^a-z]", "", raw.lower())
    if key in EMOTIONS:
        return NameMatch(key, truncated=False)
    if len(key) < MIN_PREFIX:
        return None
    matches = [name for name in EMOTIONS if name.startswith(key)]
    if len(matches) == 1:
        return NameMatch(matches[0], truncated=True)
    return None


def parse_intensity(raw: str, emotion: str) -> int | None:
    """An intensity cell as 0..MAX_INTENSITY, or None when it is not one.

    ``"2"`` and ``"2.0"`` are both 2. A blank cell is 0 for neutral only (neutral carries no
    intensity); for any other emotion it is missing data.
    """
    text = raw.strip()
    if not text:
        return 0 if emotion == "neutral" else None
    try:
        value = float(text)
    except ValueError:
        return None
    if not value.is_integer() or not 0 <= value <= MAX_INTENSITY:
        return None
    return int(value)


def _first_chosen(tied: list[str], annotations: list[Annotation]) -> str:
    """The tied emotion that the lowest-numbered annotator chose (every candidate was chosen)."""
    for emotion, _ in annotations:
        if emotion in tied:
            return emotion
    raise ValueError("tied emotions must come from the annotations")


def _counts(annotations: list[Annotation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for emotion, _ in annotations:
        counts[emotion] = counts.get(emotion, 0) + 1
    return counts


def seed_winner(annotations: list[Annotation]) -> tuple[str, bool]:
    """The seed rule's winner over all seven emotions, and whether a tie stayed unresolved."""
    if not annotations:
        raise ValueError("no annotations")
    sums: dict[str, int] = {}
    for emotion, intensity in annotations:
        sums[emotion] = sums.get(emotion, 0) + intensity
    best = max(sums.values())
    tied = [e for e, s in sums.items() if s == best]
    if len(tied) > 1:
        counts = _counts(annotations)
        most = max(counts[e] for e in tied)
        tied = [e for e in tied if counts[e] == most]
    if len(tied) == 1:
        return tied[0], False
    return _first_chosen(tied, annotations), True


def majority_winner(annotations: list[Annotation]) -> tuple[str, int, bool]:
    """The most-chosen emotion, its vote count, and whether a tie stayed unresolved.

    Only possible with min_agreement <= 2: ties on votes go to the larger intensity sum, then
    to the lowest-numbered annotator.
    """
    if not annotations:
        raise ValueError("no annotations")
    counts = _counts(annotations)
    most = max(counts.values())
    tied = [e for e, c in counts.items() if c == most]
    if len(tied) > 1:
        sums = {e: sum(i for a, i in annotations if a == e) for e in tied}
        best = max(sums.values())
        tied = [e for e in tied if sums[e] == best]
    if len(tied) == 1:
        return tied[0], most, False
    return _first_chosen(tied, annotations), most, True


def decide(annotations: list[Annotation], rule: str = "seed", min_agreement: int = 3) -> Decision:
    """Apply a named rule to one row's valid annotations."""
    if rule == "seed" or rule == "all7":
        winner, unresolved = seed_winner(annotations)
        if rule == "seed" and winner not in LABELS:
            return Decision(None, f"winner_{winner}", unresolved)
        return Decision(winner, None, unresolved)
    if rule == "majority":
        winner, votes, unresolved = majority_winner(annotations)
        if votes < min_agreement:
            return Decision(None, "below_min_agreement", unresolved)
        if winner not in LABELS:
            return Decision(None, f"winner_{winner}", unresolved)
        return Decision(winner, None, unresolved)
    raise ValueError(f"unknown label rule {rule!r}; choose one of {', '.join(RULES)}")
