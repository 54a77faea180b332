"""Where the voice changes inside one VAD utterance: a turn taken without a pause.

The VAD ends an utterance only after vad.min_silence_ms of silence, so when the client answers
straight after the counselor both are one utterance. This finds the change from the audio alone
(deterministic: the same utterance always splits the same way, live or offline, whatever came
before), so the segmenter's rules and the pipeline's order of events are untouched.

Method: voice embeddings of WINDOW_S windows every HOP_S across the utterance; for each candidate
point with at least MIN_TURN_S on each side, the similarity of the mean embedding of the windows
just left of it to that of the windows just right of it. The lowest one is the likeliest change;
it is kept when the whole of each side differs (similarity below `change_similarity`); each side is then searched again (binary segmentation), so a quick exchange of three turns
splits twice. The cut itself moves to the quietest 32 ms within CUT_SEARCH_S of the change, where
a breath or a stop consonant usually is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from core.attribution import unit
from core.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from core.speakers import SpeakerEncoder

WINDOW_S = 1.0  # shorter than the encoder's 1.6 s partials, so a change is located to a few hundred ms
HOP_S = 0.2
MIN_TURN_S = 1.5  # neither side of a split is shorter: at 1.0 s a single sentence was split now and then (bench/speakers_bench.py)
CONTEXT_S = 2.2  # how far either side of a point its change is judged on, when locating it
CANDIDATE_MARGIN = 0.1  # candidates may be this much more alike than a change; the merge decides
CUT_SEARCH_S = 0.25
CUT_FRAME = 512  # 32 ms


def find_turns(encoder: SpeakerEncoder, audio: np.ndarray, change_similarity: float) -> list[int]:
    """Sample positions where `audio` changes speaker (sorted; empty when it is one voice)."""
    window, hop, min_turn = int(WINDOW_S * SAMPLE_RATE), int(HOP_S * SAMPLE_RATE), int(MIN_TURN_S * SAMPLE_RATE)
    if len(audio) < 2 * min_turn:
        return []
    embeddings, starts = encoder.embed_windows(audio, window, hop)

    def similarity(left: tuple[int, int], right: tuple[int, int]) -> float:
        a = embeddings[(starts >= left[0]) & (starts + window <= left[1])]
        b = embeddings[(starts >= right[0]) & (starts + window <= right[1])]
        return float(unit(a.mean(axis=0)) @ unit(b.mean(axis=0))) if len(a) and len(b) else 1.0

    bounds = [0, *_candidates(similarity, len(audio), hop, min_turn, change_similarity + CANDIDATE_MARGIN), len(audio)]
    while len(bounds) > 2:  # merge the most alike neighbours until every neighbour differs
        scores = [similarity((bounds[i - 1], bounds[i]), (bounds[i], bounds[i + 1])) for i in range(1, len(bounds) - 1)]
        best = int(np.argmax(scores))
        if scores[best] < change_similarity:
            break
        del bounds[best + 1]
    return [_quietest(audio, cut, cut - min_turn // 2, cut + min_turn // 2) for cut in bounds[1:-1]]


def _candidates(similarity: Callable[[tuple[int, int], tuple[int, int]], float], length: int, hop: int, min_turn: int, below: float) -> list[int]:
    """Points where the CONTEXT_S just before and just after sound least alike (below `below`), at
    least MIN_TURN_S apart and from the ends, lowest first."""
    context = int(CONTEXT_S * SAMPLE_RATE)
    scored = sorted((similarity((max(0, p - context), p), (p, min(length, p + context))), p)
                    for p in range(min_turn, length - min_turn + 1, hop))
    chosen: list[int] = []
    for score, point in scored:
        if score >= below:
            break
        if all(abs(point - other) >= min_turn for other in chosen):
            chosen.append(point)
    return sorted(chosen)


def _quietest(audio: np.ndarray, point: int, low: int, high: int) -> int:
    """The start of the quietest 32 ms frame within CUT_SEARCH_S of `point` (kept inside [low, high])."""
    reach = int(CUT_SEARCH_S * SAMPLE_RATE)
    first, last = max(point - reach, low), min(point + reach, high - CUT_FRAME)
    if last <= first:
        return point
    frames = np.arange(first, last + 1, CUT_FRAME // 2)
    energy = [float(np.mean(np.square(audio[f : f + CUT_FRAME], dtype=np.float64))) for f in frames]
    return int(frames[int(np.argmin(energy))])
