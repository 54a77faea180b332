"""End of speech -> result with the eager end of utterance, on conversational speech with breaths inside
turns, against the baseline "min_silence + transcribe() + emotion" on the same utterances.

    .venv/bin/python -m bench.eager_bench [--per-bucket 24] [--seeds 0,1] [--speakers]

Conversations of espeak-ng English turns in room noise: 1-2 s turns, 2-4 s turns, and 4-8 s turns
of two sentences with a 200-600 ms pause between them (a breath, which the eager end guesses
wrong: its analysis is dropped), 1 s between turns. The real segmenter cuts each stream; every
analysis the daemon would run is really run and timed (Whisper base int8, the default text head),
and the one analysis thread of a session is replayed over the audio clock, as live input would
drive it: an eager analysis starts when its eager end is heard (if the thread is free of finished
utterances), a finished utterance is published when its cut is heard and its analysis is done.
"Heard" is when the VAD thread has the event: each 32 ms block is ready at its audio time and
takes the wall time its push took there.

- eager: the daemon's ASR and emotion as configured (short window, beam 5 under 2 s, eager_silence_ms 150, the decoder
  on asr.decoder_threads = 1; `--decoder-threads 0` decodes on the encoder's two threads, as before);
  `first partial` is when the full text is first shown (the eager partial, or the utterance);
- --speakers: both paths with the speaker stage the daemon runs by default (speakers.max_speakers 2,
  no voiceprints) on the VAD thread: the eager path embeds at the eager end (its utterance reuses
  that), the baseline at the cut; without it neither path has the stage (the issue's measure);
- baseline: "min_silence + transcribe() + emotion" for the same cuts: each analysed when cut, by
  faster-whisper's transcribe() (beam 1), on an idle machine (no queueing behind other utterances);
- WER per bucket is over turns (a turn the VAD split in two is compared as a whole).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np

from bench.latency_bench import CORPUS
from testsupport.speech import synthesize, trim, word_error_rate

SR = 16_000
BLOCK = 512
BUCKETS = ("1-2 s", "2-4 s", "4-8 s")


@dataclass
class Cut:
    """An utterance as the segmenter cut it: when its eager end and its cut were heard (audio s)."""

    utterance: object
    cut_at: float
    eager_at: float | None  # the eager end that came true, if any
    turn: int


def conversation(rng: np.random.Generator, per_bucket: int) -> tuple[np.ndarray, list[tuple[str, str, float, float]]]:
    """(audio, [(bucket, text, start, end)]) of shuffled turns with 1 s between them."""
    short, medium = CORPUS["1-2 s"], CORPUS["2-4 s"]
    turns = [("1-2 s", [short[i % len(short)]]) for i in range(per_bucket)]
    turns += [("2-4 s", [medium[i % len(medium)]]) for i in range(per_bucket)]
    turns += [("4-8 s", [medium[(i + 7) % len(medium)], short[(i + 5) % len(short)]]) for i in range(per_bucket)]
    order = rng.permutation(len(turns))
    gap = np.zeros(SR, np.float32)
    pieces, spans, cursor = [gap], [], len(gap)
    for index in order:
        bucket, sentences = turns[index]
        start = cursor
        for i, sentence in enumerate(sentences):
            if i:
                pause = np.zeros(int(rng.uniform(0.2, 0.6) * SR), np.float32)
                pieces.append(pause)
                cursor += len(pause)
            speech = trim(synthesize(sentence))
            pieces.append(speech)
            cursor += len(speech)
        spans.append((bucket, " ".join(sentences), start / SR, cursor / SR))
        pieces.append(gap)
        cursor += len(gap)
    audio = np.concatenate(pieces)
    return audio + (rng.standard_normal(len(audio)) * 10 ** (-60 / 20)).astype(np.float32), spans


def cut(audio: np.ndarray, spans, config, encoder=None) -> tuple[list[Cut], list[tuple[object, float]]]:
    """The utterances (with the eager end that came true) and every eager end heard, by the
    daemon's segmenter for `config` (with its speaker stage when speakers are on)."""
    from streamer.run import make_segmenter
    from streamer.segmenter import EagerEnd, Utterance

    segmenter = make_segmenter(config, encoder)
    eager: list[tuple[object, float]] = []
    cuts: list[Cut] = []
    free = 0.0  # when the VAD thread is done with the blocks so far
    for begin in range(0, len(audio), BLOCK):
        started = time.perf_counter()
        events = segmenter.push(audio[begin : begin + BLOCK])
        free = max((begin + BLOCK) / SR, free) + time.perf_counter() - started
        for event in events:
            heard = free
            if isinstance(event, EagerEnd):
                eager.append((event.utterance, heard))
            elif isinstance(event, Utterance):
                true = [at for u, at in eager if u.same_as(event)]
                turn = next(i for i, (_b, _t, s, e) in enumerate(spans) if event.start < e + 0.5 and event.end > s - 0.5)
                cuts.append(Cut(event, heard, true[-1] if true else None, turn))
    return cuts, eager


def replay(jobs: list[tuple[float, float, str]]) -> dict[str, float]:
    """One analysis thread: jobs (ready at, seconds of work, key) in order of readiness -> key: done at."""
    free, done = 0.0, {}
    for ready, work, key in sorted(jobs):
        start = max(ready, free)
        free = done[key] = start + work
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bucket", type=int, default=24)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--short-beam", type=int, help="asr.short_beam_size for the eager path (default: the config's)")
    parser.add_argument("--short-beam-max-s", type=float, help="asr.short_beam_max_s (default: the config's)")
    parser.add_argument("--decoder-threads", type=int, help="asr.decoder_threads (default: the config's)")
    parser.add_argument("--speakers", action="store_true", help="both paths with the default speaker stage (module docstring)")
    args = parser.parse_args()

    from core.asr import load_whisper, transcribe
    from core.bundle import load_bundle
    from core.models import Sample
    from streamer.config import Config

    config = Config()
    encoder = None
    if args.speakers:
        from core.speakers import SpeakerEncoder

        empty = tempfile.mkdtemp(prefix="no-voiceprints-")  # the bench's voice is nobody enrolled
        config = replace(config, speakers=replace(config.speakers, voiceprints=empty))
        encoder = SpeakerEncoder(config.speakers.device)
    else:
        config = replace(config, speakers=replace(config.speakers, max_speakers=0))
    plain = replace(config, vad=replace(config.vad, eager_silence_ms=0))
    chosen = {"short_beam_size": args.short_beam, "short_beam_max_s": args.short_beam_max_s,
              "decoder_threads": args.decoder_threads}
    asr = replace(config.asr, language="en", **{k: v for k, v in chosen.items() if v is not None})
    whisper = load_whisper(asr)
    bundle = load_bundle("default")

    def analyse(audio: np.ndarray) -> tuple[str, float]:
        started = time.perf_counter()
        text = transcribe(whisper, audio, "en", asr).text
        if text:
            bundle.predict([Sample(text=text)])
        return text, time.perf_counter() - started

    def baseline(audio: np.ndarray) -> tuple[str, float]:
        started = time.perf_counter()
        segments, _ = whisper.model.transcribe(audio, language="en", beam_size=1)
        text = " ".join(s.text.strip() for s in segments)
        if text:
            bundle.predict([Sample(text=text)])
        return text, time.perf_counter() - started

    warm = trim(synthesize(CORPUS["2-4 s"][0]))
    analyse(warm), baseline(warm)
    rows = {b: {"eager": [], "partial": [], "base": []} for b in BUCKETS}
    wer = {b: {"eager": [0.0, 0], "base": [0.0, 0]} for b in BUCKETS}
    work = {"all": 0.0, "dropped": 0.0, "dropped_n": 0, "eager_n": 0}
    for seed in [int(s) for s in args.seeds.split(",")]:
        rng = np.random.default_rng(seed)
        audio, spans = conversation(rng, args.per_bucket)
        cuts, eager = cut(audio, spans, config, encoder)
        texts, jobs, heard = {}, [], {}
        for index, (utterance, at) in enumerate(eager):  # speculations: real analyses, timed
            key = f"e{index}"
            texts[key], seconds = analyse(utterance.audio)
            work["all"] += seconds
            work["eager_n"] += 1
            if not any(c.utterance is not None and c.eager_at == at and utterance.same_as(c.utterance) for c in cuts):
                work["dropped"] += seconds
                work["dropped_n"] += 1
            jobs.append((at, seconds, key))
            heard[key] = (utterance, at)
        for index, c in enumerate(cuts):
            key = f"u{index}"
            if c.eager_at is None:  # no eager end came true: analysed when cut
                texts[key], seconds = analyse(c.utterance.audio)
                work["all"] += seconds
                jobs.append((c.cut_at, seconds, key))
        done = replay(jobs)
        by_turn: dict[int, dict[str, list[str]]] = {}
        for c in cut(audio, spans, plain, encoder)[0]:  # the baseline: the same cuts, heard without the eager end
            text, seconds = baseline(c.utterance.audio)
            by_turn.setdefault(c.turn, {"eager": [], "base": []})["base"].append(text)
            if c.utterance.speech_end is not None:  # the first part of a turn split at a voice change has none
                rows[spans[c.turn][0]]["base"].append(c.cut_at + seconds - c.utterance.speech_end)
        for index, c in enumerate(cuts):
            bucket = spans[c.turn][0]
            end = c.utterance.speech_end
            if c.eager_at is not None:
                key = next(k for k, (u, at) in heard.items() if at == c.eager_at and u.same_as(c.utterance))
                ready = done[key]
                published, partial = max(c.cut_at, ready), min(max(c.cut_at, ready), ready)
            else:
                key = f"u{index}"
                published = partial = done[key]
            by_turn.setdefault(c.turn, {"eager": [], "base": []})["eager"].append(texts[key])
            if end is not None:
                rows[bucket]["eager"].append(published - end)
                rows[bucket]["partial"].append(partial - end)
        for turn, heard_texts in by_turn.items():
            bucket, text = spans[turn][0], spans[turn][1]
            for path in ("eager", "base"):
                wer[bucket][path][0] += word_error_rate(text, " ".join(heard_texts[path])) * len(text.split())
                wer[bucket][path][1] += len(text.split())

    def ms(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    print(f"eager end of utterance, {args.per_bucket} turns per bucket x seeds {args.seeds}; Whisper base "
          f"{whisper.compute_type} {whisper.device}, {asr.cpu_threads} threads (decoder {asr.decoder_threads or asr.cpu_threads}), beam {asr.beam_size} (eager: {asr.short_beam_size} under "
          f"{asr.short_beam_max_s} s); speaker stage {'on (both paths)' if args.speakers else 'off'}; end of speech (as the VAD heard it) -> result, ms")
    print("| bucket | n | utterance p50 / p95 | first partial p50 / p95 | baseline p50 / p95 | utterance p95 / baseline p95 "
          "| partial p95 / baseline p95 | WER eager | WER baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    every = {k: [x for b in BUCKETS for x in rows[b][k]] for k in ("eager", "partial", "base")}
    for bucket in (*BUCKETS, "all <= 8 s"):
        r = every if bucket == "all <= 8 s" else rows[bucket]
        w = ({p: [sum(wer[b][p][0] for b in BUCKETS), sum(wer[b][p][1] for b in BUCKETS)] for p in ("eager", "base")}
             if bucket == "all <= 8 s" else wer[bucket])
        print(f"| {bucket} | {len(r['eager'])} | {ms(r['eager'], 50):.0f} / {ms(r['eager'], 95):.0f} | "
              f"{ms(r['partial'], 50):.0f} / {ms(r['partial'], 95):.0f} | {ms(r['base'], 50):.0f} / {ms(r['base'], 95):.0f} | "
              f"{ms(r['eager'], 95) / ms(r['base'], 95):.2f} | {ms(r['partial'], 95) / ms(r['base'], 95):.2f} | "
              f"{w['eager'][0] / max(w['eager'][1], 1):.3f} | {w['base'][0] / max(w['base'][1], 1):.3f} |")
    print(f"\neager analyses: {work['eager_n']}, dropped (speech went on) {work['dropped_n']}; "
          f"share of ASR time spent on dropped speculation: {work['dropped'] / max(work['all'], 1e-9):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
