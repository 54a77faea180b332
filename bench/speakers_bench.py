"""Speaker attribution on synthetic two-voice conversations: how much speech time gets the right
speaker, online as the daemon does it, against baselines from the same run.

    python -m bench.speakers_bench [--turns 16] [--device cpu|cuda]

Conversations (testsupport/conversation.py): two espeak-ng voices take turns with 1.0, 0.4 and
0.2 s between turns (below vad.min_silence_ms = 0.5 s the VAD joins the turns, so only the turn
splitting can tell them apart), every third turn a short backchannel ("Yes.", "Okay.", <= 1 s).
Each gap is run twice, with the voices' order swapped.

Rows, all on the same VAD utterances and the same embeddings:
- online (the daemon): streamer/speakers.py's stage, turn splitting and the online tracker;
- online, no turn splitting: the same tracker on the VAD's utterances as they come;
- offline agglomerative: scikit-learn's AgglomerativeClustering (2 clusters, cosine, average
  linkage) of the online row's part embeddings over the whole file: what an online method can
  hope for with those parts;
- everyone is one speaker.
"Speech right" is the share of the true speech time given to the right speaker under the best
mapping of ids to voices (scipy's linear_sum_assignment); speech the VAD missed counts as wrong.
"Backchannels" is the same over the backchannels' time alone. "Roles right" runs the online row
with voice 0's voiceprint enrolled as the counselor (made from other sentences): the share of
speech time whose role (counselor / client) is right, no mapping. The cost is the stage's own
time per utterance (embedding, turn search), on the device named. CPU figures are noisy on a
shared machine: compare rows of one run.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering

from core.attribution import SpeakerTracker, unit
from core.config import SpeakersConfig
from core.speakers import SAMPLE_RATE, SpeakerEncoder
from streamer.config import VadConfig
from streamer.segmenter import Segmenter, Utterance
from streamer.speakers import SpeakerStage
from testsupport.conversation import Turn, alternating
from testsupport.speech import synthesize, trim

GAPS = (1.0, 0.4, 0.2)
THRESHOLD = SpeakersConfig().new_speaker_similarity
CHANGE = SpeakersConfig().change_similarity
ENROLMENT = ("Good morning, how have you been since we last met?", "Tell me more about what happened that week.")


@dataclass
class Part:
    start: float
    end: float
    label: str  # the id or role given
    audio: np.ndarray


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def speech_right(parts: list[Part], truth: list[Turn], only: list[Turn] | None = None, mapped: bool = True) -> float:
    """Share of the true speech time (of `only`'s turns, default all) given to the right speaker."""
    turns = only if only is not None else truth
    total = sum(t.end - t.start for t in turns)
    labels = sorted({p.label for p in parts})
    time_by = np.zeros((len(labels), 2))
    for p in parts:
        for t in turns:
            time_by[labels.index(p.label), t.speaker] += overlap(p.start, p.end, t.start, t.end)
    if not mapped:  # labels are roles: "counselor" is voice 0, "client" voice 1
        return sum(time_by[labels.index(role), s] for s, role in enumerate(("counselor", "client")) if role in labels) / total
    rows, cols = linear_sum_assignment(-time_by) if len(labels) else ([], [])
    return float(time_by[rows, cols].sum()) / total


def online(encoder: SpeakerEncoder, audio: np.ndarray, split: bool, voiceprints: dict | None = None,
           roles: bool = False) -> tuple[list[Part], list[float]]:
    """The daemon's stage over `audio` in 1 s blocks; the parts and the stage's time per VAD utterance."""
    # Without splitting: no two sides are ever less similar than -1, so nothing is split.
    stage = SpeakerStage(Segmenter(VadConfig()), encoder, SpeakerTracker(2, THRESHOLD, voiceprints),
                         CHANGE if split else -1.0)
    costs: list[float] = []
    original = stage.split

    def timed(utterance: Utterance) -> list[Utterance]:
        started = time.perf_counter()
        try:
            return original(utterance)
        finally:
            costs.append(time.perf_counter() - started)

    stage.split = timed
    events = [e for i in range(0, len(audio), SAMPLE_RATE) for e in stage.push(audio[i:i + SAMPLE_RATE])] + stage.flush()
    parts = [Part(e.start, e.end, e.speaker["role" if roles else "id"] or "none", e.audio)
             for e in events if isinstance(e, Utterance)]
    return parts, costs


def offline(encoder: SpeakerEncoder, parts: list[Part]) -> list[Part]:
    embeddings = np.stack([encoder.embed(p.audio) for p in parts])
    labels = AgglomerativeClustering(n_clusters=2, metric="cosine", linkage="average").fit_predict(embeddings)
    return [Part(p.start, p.end, f"C{label}", p.audio) for p, label in zip(parts, labels)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=16, help="turns per conversation (default 16)")
    parser.add_argument("--device", default="cpu", help="where the encoder runs (cpu, cuda)")
    args = parser.parse_args(argv)
    encoder = SpeakerEncoder(args.device)
    rows: dict[str, list[tuple[float, float]]] = {}
    costs: list[float] = []
    durations: list[float] = []
    for gap in GAPS:
        for order in (0, 1):
            voices = ("en-us+m3", "en-us+f2")[::1 if order == 0 else -1]
            audio, truth = alternating(args.turns, gap, backchannel_every=3, voices=voices)
            backchannels = [t for i, t in enumerate(truth) if i % 3 == 2]
            assert max(t.end - t.start for t in backchannels) <= 1.0, "a backchannel is longer than 1 s"
            enrolled = {"counselor": unit(sum(encoder.embed(trim(synthesize(s, voices[0]))) for s in ENROLMENT))}
            parts, cost = online(encoder, audio, split=True)
            costs += cost
            durations += [p.end - p.start for p in parts]
            unsplit, _ = online(encoder, audio, split=False)
            with_roles, _ = online(encoder, audio, split=True, voiceprints=enrolled, roles=True)
            one = [Part(p.start, p.end, "S1", p.audio) for p in parts]
            for name, got, mapped in (("online (the daemon)", parts, True), ("online, no turn splitting", unsplit, True),
                                      ("offline agglomerative (same parts)", offline(encoder, parts), True),
                                      ("everyone is one speaker", one, True), ("online, roles with enrolment", with_roles, False)):
                rows.setdefault(f"{name}|{gap}", []).append(
                    (speech_right(got, truth, mapped=mapped), speech_right(got, truth, backchannels, mapped=mapped)))

    print(f"\n{len(GAPS) * 2} conversations of {args.turns} turns, every third a backchannel; encoder on {args.device}\n")
    print(f"| method | {' | '.join(f'gap {g:.1f} s: speech right / backchannels' for g in GAPS)} |")
    print(f"|---|{'---|' * len(GAPS)}")
    names = dict.fromkeys(key.split("|")[0] for key in rows)
    for name in names:
        cells = []
        for gap in GAPS:
            values = np.array(rows[f"{name}|{gap}"])
            cells.append(f"{values[:, 0].mean():.3f} / {values[:, 1].mean():.3f}")
        label = f"{name} (roles right)" if "roles" in name else name
        print(f"| {label} | {' | '.join(cells)} |")
    ms = np.array(costs) * 1000
    print(f"\nthe stage's cost per VAD utterance (turn search + embedding of its parts) on {args.device}: "
          f"mean {ms.mean():.1f} ms, p95 {np.percentile(ms, 95):.1f} ms over {len(ms)} VAD utterances "
          f"(mean part {np.mean(durations):.2f} s)")


if __name__ == "__main__":
    main()
