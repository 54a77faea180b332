"""Where the voice changes inside one VAD utterance: a turn taken without a pause.

The VAD ends an utterance only after vad.min_silence_ms of silence, so when the client answers
straight after the counselor both are one utterance. This finds the change from the audio alone
(deterministic: the same utterance always splits the same way, live or offline, whatever came
before), so the segmenter's rules and the pipeline's order of events are untouched.

Method, on the utterance's audio alone:
1. candidate changes: the pauses inside it (MIN_PAUSE_S of audio PAUSE_DB below its loud parts:
   turns taken after a short breath, shorter than vad.min_silence_ms), and, for turns taken with no
   pause at all, the points where WINDOW_S-window embeddings of the CONTEXT_S before and after
   differ most (located to a HOP_S, at least MIN_TURN_S apart);
2. each piece between candidates is embedded once; neighbouring runs of pieces are merged, most
   alike first (duration-weighted mean similarity of their pieces: average linkage, which does not
   drift as the embedding of a growing run would), until every two neighbours differ (below
   `change_similarity`). A piece shorter than MIN_PART_S is too short to judge and joins its more
   alike neighbour: a "yes" murmured in the middle of the other's sentence stays theirs.
On the benchmark's conversations (bench/speakers_bench.py) this recovers turns 0.2 s apart; a
piece of the other voice shorter than MIN_PART_S is not split off.
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
MIN_TURN_S = 1.5  # window-contrast candidates are this far apart and from the ends (at 1.0 s, single sentences split)
CONTEXT_S = 2.2  # how far either side of a point its change is judged on, when locating it
CANDIDATE_MARGIN = 0.1  # candidates may be this much more alike than a change; the merge decides
MIN_PAUSE_S = 0.15  # a quieter stretch this long inside an utterance is a pause where a turn may change
PAUSE_DB = 30.0  # a pause is this much quieter than the utterance's loud frames (its 95th percentile)
PAUSE_SNAP_S = 0.6  # a contrast candidate this close to a pause is that pause
MIN_PART_S = 0.8  # a piece between candidates shorter than this is too short to tell its voice
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

    contrast = _candidates(similarity, len(audio), hop, min_turn, change_similarity + CANDIDATE_MARGIN)
    pauses = _pauses(audio)
    # A pause near a contrast candidate is where that change is: the contrast only locates it to a window.
    near = int(PAUSE_SNAP_S * SAMPLE_RATE)
    bounds = [0, *sorted(set(pauses) | {c for c in contrast if all(abs(c - p) > near for p in pauses)}), len(audio)]
    # Each piece between candidates is embedded once; a run of merged pieces is compared with its
    # neighbour by the mean similarity of their pieces (average linkage, weighted by duration), so
    # a merged run does not drift towards the other voice as the run's own embedding would.
    pieces = [(encoder.embed(audio[x:y]), y - x) for x, y in zip(bounds, bounds[1:])]
    groups = [[i] for i in range(len(pieces))]

    def linkage(left: list[int], right: list[int]) -> float:
        total = sum(pieces[i][1] * pieces[j][1] * float(pieces[i][0] @ pieces[j][0]) for i in left for j in right)
        return total / (sum(pieces[i][1] for i in left) * sum(pieces[j][1] for j in right))

    min_part = int(MIN_PART_S * SAMPLE_RATE)
    while len(groups) > 1:  # merge the most alike neighbours until every two neighbours differ
        scores = []
        for left, right in zip(groups, groups[1:]):
            score = linkage(left, right)
            if min(sum(pieces[i][1] for i in left), sum(pieces[j][1] for j in right)) < min_part:
                score += 1.0  # too short to judge: always joins its more alike neighbour
            scores.append(score)
        best = int(np.argmax(scores))
        if scores[best] < change_similarity:
            break
        groups[best : best + 2] = [groups[best] + groups[best + 1]]
    bounds = [0, *(bounds[group[0]] for group in groups[1:]), len(audio)]
    return [cut if cut in pauses else _quietest(audio, cut, cut - min_turn // 2, cut + min_turn // 2) for cut in bounds[1:-1]]


def _pauses(audio: np.ndarray) -> list[int]:
    """The middles of the pauses inside `audio`: runs of at least MIN_PAUSE_S of 32 ms frames more
    than PAUSE_DB below the utterance's loud frames (its 95th percentile)."""
    n = len(audio) // CUT_FRAME
    if n == 0:
        return []
    power = np.mean(np.square(audio[: n * CUT_FRAME].reshape(n, CUT_FRAME), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-12))
    quiet = db < np.percentile(db, 95) - PAUSE_DB
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    frames = int(MIN_PAUSE_S * SAMPLE_RATE / CUT_FRAME)
    return [int((a + b) // 2 * CUT_FRAME) for a, b in zip(edges[::2], edges[1::2])
            if b - a >= frames and a > 0 and b < n]


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
