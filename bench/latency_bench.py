"""End-of-speech-to-result latency and WER: faster-whisper's 30 s path against the short window.

Every utterance is espeak-ng English (Whisper understands it; its Korean does not) inside a quiet
room (-60 dBFS noise), streamed through the real Segmenter in 32 ms blocks as a microphone would
deliver it. For each utterance the segmenter emits, three ASR paths run back to back on the same
audio, in turn, so machine load hits all three alike:

- `transcribe()`: faster-whisper's WhisperModel.transcribe, defaults except the beam and the language
  (the baseline: 30 s window, its own fallback and filters);
- `asr 30 s`: core.asr with asr.short_window = false (same decoding as the short window, 30 s);
- `asr short`: core.asr with the short window (the default);
- `asr short+sb` (only with --short-beam N): the short window with asr.short_beam_size = N for
  utterances under --short-beam-max-s (asr.short_beam_max_s), --beam for longer ones.

Each is followed by the emotion bundle (default: the shipped one), as the analyzer does.
Latency = the silence the segmenter waited for after the speech ended (vad.min_silence_ms plus up
to a chunk; the same for all paths) + ASR + emotion. Also printed: WER per path, CPU time per second
of audio of everything but ASR, and the cost of a partial's interim text.

    .venv/bin/python -m bench.latency_bench            # 8 utterances per length bucket
    .venv/bin/python -m bench.latency_bench --per-bucket 3 --bundle none
    .venv/bin/python -m bench.latency_bench --window-sweep [--seed 1]   # how the window was chosen
    .venv/bin/python -m bench.latency_bench --short-beam 5 --no-30s --per-bucket 24   # asr.short_beam_size

Timings depend on what else the machine runs: compare paths within one run, not across runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

import core  # noqa: F401  (sets OMP_WAIT_POLICY before any model library loads)

ROOT = Path(__file__).resolve().parents[1]

CORPUS: dict[str, list[str]] = {
    "1-2 s": [
        "Good morning everyone.", "Where are my keys?", "That sounds wonderful.", "Turn left at the bank.",
        "I am very tired.", "See you next week.", "Close the window please.", "It is raining again.",
        "Thank you so much.", "I need a coffee.", "The bus is late.", "Call me tomorrow.", "Dinner is ready.",
        "What time is it?", "I lost my wallet.", "Open the door.", "She is my sister.", "We won the game.",
        "Please sit down.", "The room is cold.", "Let us go home.", "He missed the train.", "I love this song.",
        "Bring me the menu.",
    ],
    "2-4 s": [
        "Please call me back when you get home tonight.", "The quick brown fox jumps over the lazy dog.",
        "I really enjoyed the concert in the park yesterday.", "We need to buy milk, bread and eggs for breakfast.",
        "My brother is moving to a new city next month.", "The weather has been cold and rainy all week.",
        "She forgot her umbrella at the office again.", "Could you help me carry these boxes upstairs?",
        "The children are playing football in the garden.", "I think we should leave before the traffic gets bad.",
        "Our neighbors painted their house bright yellow.", "Can you tell me where the train station is?",
        "He has been learning to cook Italian food.", "The library closes early on Saturday afternoons.",
        "My phone battery died in the middle of the call.", "We watched an old movie together last night.",
        "The teacher asked everyone to write a short story.", "Please remember to water the plants while I am away.",
        "The restaurant on the corner serves excellent soup.", "I will send you the documents by tomorrow morning.",
        "Her cat likes to sleep on the warm windowsill.", "They are planning a trip to the mountains in July.",
        "The new bridge will open to traffic next spring.", "I found a wallet on the bus and gave it to the driver.",
    ],
    "4-8 s": [
        "After dinner we walked along the river and watched the boats drift slowly toward the old bridge.",
        "The doctor said I should drink more water, sleep at least eight hours and take a short walk every day.",
        "Our team finished the project two days early, so the manager invited everyone to a small celebration.",
        "I tried to fix the kitchen sink myself, but in the end I had to call a plumber to help me.",
        "The children built a huge sand castle on the beach and decorated it with shells and seaweed.",
        "When the train was delayed for an hour, most of the passengers waited patiently in the cold station.",
        "My grandmother grows tomatoes, beans and potatoes in the garden behind her little house.",
        "The museum will be closed on Monday because the workers are repairing the roof and the windows.",
    ],
    "8-15 s": [
        "Last summer my family drove across the country in an old van, stopping at small towns, national parks "
        "and roadside diners, and we still talk about the trip every time we meet for dinner.",
        "The new library downtown has a quiet reading room on the top floor, a large section for children, and "
        "a cafe where students can study together late into the evening.",
        "Before the meeting starts, please read the report carefully, write down any questions you have about "
        "the budget, and send them to me so that I can prepare the answers.",
        "It took me almost three years to learn to play the piano well enough to perform in public, but the "
        "moment the audience started clapping I knew it had been worth every hour of practice.",
        "The city council decided to plant two thousand trees along the main streets, hoping that the shade "
        "will keep the neighborhoods cooler during the long and very hot summer months.",
        "If you want to bake good bread at home, you need fresh yeast, strong flour, a little patience, and an "
        "oven that is hot enough to give the crust a deep golden color.",
        "My neighbor adopted a small dog from the shelter last spring, and now they go running together in the "
        "park every morning before the sun comes up over the hills.",
        "The engineers tested the bridge for several weeks with heavy trucks and sensors before the mayor "
        "finally allowed cars and buses to cross it during the morning rush hour.",
    ],
}
SR = 16_000
BLOCK = 512  # 32 ms, as audio.block_ms


def stream_for(text: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """0.6 s of room noise, the sentence, 1.5 s of room noise; and the true end of speech (s)."""
    from testsupport.speech import synthesize, trim

    speech = trim(synthesize(text))
    lead, tail = np.zeros(int(0.6 * SR), np.float32), np.zeros(int(1.5 * SR), np.float32)
    audio = np.concatenate([lead, speech, tail])
    audio += (rng.standard_normal(len(audio)) * 10 ** (-60 / 20)).astype(np.float32)
    return audio, (len(lead) + len(speech)) / SR


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bucket", type=int, default=8, help="utterances per length bucket (8 for the longer two)")
    parser.add_argument("--threads", type=int, default=2, help="Whisper CPU threads (asr.cpu_threads)")
    parser.add_argument("--beam", type=int, default=1, help="beam size for every path (asr.beam_size)")
    parser.add_argument("--short-beam", type=int, default=0,
                        help="also run the short window with this beam below --short-beam-max-s (asr.short_beam_size)")
    parser.add_argument("--short-beam-max-s", type=float, default=4.0, help="asr.short_beam_max_s for --short-beam")
    parser.add_argument("--no-30s", action="store_true", help="leave out the `asr 30 s` path (saves time)")
    parser.add_argument("--bundle", default="default", help="emotion bundle, or 'none' to time ASR only")
    parser.add_argument("--verbose", action="store_true", help="print every transcript with a word error")
    parser.add_argument("--seed", type=int, default=0, help="seed of the room noise mixed into the speech")
    parser.add_argument("--window-sweep", action="store_true",
                        help="instead: WER by encoder window and padding on the 24 + 24 sentences of 1-4 s")
    args = parser.parse_args(argv)
    if args.window_sweep:
        return window_sweep(args.threads, args.seed)

    from core.asr import load_whisper, transcribe
    from core.bundle import Sample, load_bundle
    from core.config import AsrConfig
    from streamer.config import VadConfig
    from streamer.segmenter import Segmenter, Utterance
    from testsupport.speech import word_error_rate

    base = AsrConfig(language="en", cpu_threads=args.threads, beam_size=args.beam, short_beam_size=0)
    configs = {"asr 30 s": dataclasses.replace(base, short_window=False), "asr short": base}
    if args.no_30s:
        del configs["asr 30 s"]
    if args.short_beam:
        configs["asr short+sb"] = dataclasses.replace(
            base, short_beam_size=args.short_beam, short_beam_max_s=args.short_beam_max_s
        )
    paths = ("transcribe()", *configs)
    whisper = load_whisper(base)
    bundle = None if args.bundle == "none" else load_bundle(args.bundle)
    rng = np.random.default_rng(args.seed)

    def emotion(text: str) -> float:
        if bundle is None or not text.strip():
            return 0.0
        start = time.perf_counter()
        bundle.predict([Sample(text=text)])
        return (time.perf_counter() - start) * 1000.0

    # Warm up every path once (first calls allocate); not measured.
    warm, _ = stream_for(CORPUS["2-4 s"][0], rng)
    whisper.model.transcribe(warm, language="en", beam_size=args.beam)
    for cfg in configs.values():
        transcribe(whisper, warm, "en", cfg)
    emotion("warm up the text model")

    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    cpu = {"vad": 0.0, "text": 0.0, "features": 0.0}
    audio_seconds = 0.0
    problems = []
    for bucket, sentences in CORPUS.items():
        for text in sentences[: args.per_bucket]:
            audio, speech_end = stream_for(text, rng)
            audio_seconds += len(audio) / SR
            segmenter = Segmenter(VadConfig())
            found = []
            cpu_start = time.process_time()
            for begin in range(0, len(audio), BLOCK):
                for event in segmenter.push(audio[begin : begin + BLOCK]):
                    if isinstance(event, Utterance):
                        found.append((event, segmenter.position))
            cpu["vad"] += time.process_time() - cpu_start
            if len(found) != 1:
                problems.append(f"{len(found)} utterances for {text!r}")
                continue
            utterance, emitted_at = found[0]
            waited_ms = (emitted_at - speech_end) * 1000.0
            length = utterance.end - utterance.start
            emotion_ms = None  # once per utterance: the text head caches texts it has seen
            for path in paths:
                start = time.perf_counter()
                if path == "transcribe()":
                    segments, _info = whisper.model.transcribe(utterance.audio, language="en", beam_size=args.beam)
                    hypothesis = " ".join(s.text.strip() for s in segments)
                else:
                    hypothesis = transcribe(whisper, utterance.audio, "en", configs[path]).text
                asr_ms = (time.perf_counter() - start) * 1000.0
                if emotion_ms is None:
                    cpu_start = time.process_time()
                    emotion_ms = emotion(hypothesis)
                    cpu["text"] += time.process_time() - cpu_start
                row = rows.setdefault((bucket, path), {k: [] for k in ("asr", "emotion", "latency", "wer", "words", "length")})
                row["asr"].append(asr_ms)
                row["emotion"].append(emotion_ms)
                row["latency"].append(waited_ms + asr_ms + emotion_ms)
                row["wer"].append(word_error_rate(text, hypothesis) * len(text.split()))
                if args.verbose and row["wer"][-1]:
                    print(f"  {path:13} {length:4.1f} s  {hypothesis!r}", file=sys.stderr)
                row["words"].append(len(text.split()))
                row["length"].append(length)
            cpu["features"] += _feature_cpu(utterance.audio)
        print(f"  {bucket}: done", file=sys.stderr)

    print(f"\nWhisper base {whisper.compute_type} {whisper.device}, {args.threads} threads, beam {args.beam}"
          f"{f'; +sb = beam {args.short_beam} under {args.short_beam_max_s:g} s' if args.short_beam else ''}; emotion: "
          f"{'none' if bundle is None else bundle.loaded()['text']}; end of speech -> result, ms "
          f"(includes the {VadConfig().min_silence_ms} ms of silence the segmenter waits for)\n")
    print(f"{'length':8} {'n':>2} {'len s':>5} | {'path':13} {'asr p50':>7} {'asr p95':>7} {'emo p50':>7} "
          f"{'lat p50':>7} {'lat p95':>7} {'WER':>6}")
    for bucket in CORPUS:
        for path in paths:
            row = rows.get((bucket, path))
            if not row:
                continue
            print(
                f"{bucket:8} {len(row['asr']):>2} {np.mean(row['length']):5.1f} | {path:13} "
                f"{percentile(row['asr'], 50):7.0f} {percentile(row['asr'], 95):7.0f} {percentile(row['emotion'], 50):7.0f} "
                f"{percentile(row['latency'], 50):7.0f} {percentile(row['latency'], 95):7.0f} "
                f"{sum(row['wer']) / sum(row['words']):6.3f}"
            )
    for path in paths:
        wer = [w for (b, p), r in rows.items() if p == path for w in r["wer"]]
        words = [w for (b, p), r in rows.items() if p == path for w in r["words"]]
        lat8 = [x for (b, p), r in rows.items() if p == path and b != "8-15 s" for x in r["latency"]]
        wer8 = sum(w for (b, p), r in rows.items() if p == path and b != "8-15 s" for w in r["wer"])
        words8 = sum(w for (b, p), r in rows.items() if p == path and b != "8-15 s" for w in r["words"])
        print(f"{'all':8}          | {path:13} WER {sum(wer) / max(sum(words), 1):.3f}; up to 8 s: WER "
              f"{wer8 / max(words8, 1):.3f}, latency p50 {percentile(lat8, 50):.0f} ms, p95 {percentile(lat8, 95):.0f} ms")

    print(f"\nCPU time besides ASR, per second of audio ({audio_seconds:.0f} s streamed): "
          f"VAD + segmenter {cpu['vad'] / audio_seconds * 1000:.1f} ms, "
          f"text model {cpu['text'] / audio_seconds * 1000:.1f} ms, "
          f"log-mel features (core.features, for an audio model) {cpu['features'] / audio_seconds * 1000:.1f} ms")
    _partial_cost(whisper, base)
    for problem in problems:
        print("warning:", problem)
    return 0


def segmented(text: str, rng: np.random.Generator):
    """The utterance the real segmenter cuts from the sentence's stream (None if not exactly one)."""
    from streamer.config import VadConfig
    from streamer.segmenter import Segmenter, Utterance

    audio, _end = stream_for(text, rng)
    segmenter = Segmenter(VadConfig())
    found = [e for b in range(0, len(audio), BLOCK) for e in segmenter.push(audio[b : b + BLOCK]) if isinstance(e, Utterance)]
    return found[0] if len(found) == 1 else None


def window_sweep(threads: int, seed: int) -> int:
    """Why core.asr picks its windows: WER of one decode per window size, with the window
    filled by 0.0 in the log-mel (faster-whisper's way and core.asr.encoder_input) or by zero
    audio before the log-mel (OpenAI Whisper's way), against faster-whisper's transcribe()."""
    from core import asr
    from core.config import AsrConfig
    from testsupport.speech import word_error_rate

    cfg = AsrConfig(language="en", cpu_threads=threads)
    whisper = asr.load_whisper(cfg)
    model, tokenizer = whisper.model, whisper.tokenizer("en")
    rng = np.random.default_rng(seed)
    windows = (4.0, 8.0, 16.0, 30.0)
    print(f"{'sentences':14} {'n':>3} {'len s':>5} | {'transcribe()':>12} | "
          + " ".join(f"{f'{w:g} s audio':>11} {f'{w:g} s mel':>9}" for w in windows))
    for bucket in ("1-2 s", "2-4 s"):
        utterances = [(text, segmented(text, rng)) for text in CORPUS[bucket]]
        utterances = [(text, u.audio) for text, u in utterances if u is not None]
        words = sum(len(text.split()) for text, _ in utterances)
        errors: dict[str, float] = {}

        def add(key: str, text: str, hypothesis: str) -> None:
            errors[key] = errors.get(key, 0.0) + word_error_rate(text, hypothesis) * len(text.split())

        for text, audio in utterances:
            segments, _info = model.transcribe(audio, language="en", beam_size=1)
            add("transcribe()", text, " ".join(s.text.strip() for s in segments))
            duration = len(audio) / SR
            for window in windows:
                window = min(30.0, max(window, np.ceil(duration / 2) * 2))  # never shorter than the speech
                frames = int(window * 100)
                inputs = {
                    "audio": model.feature_extractor(np.pad(audio, (0, frames * 160 - len(audio))))[..., :frames],
                    "mel": asr.encoder_input(whisper, audio, window),
                }
                plan = asr.DecodePlan(window, 1, asr.plan_for(duration, cfg).budget_s)
                prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
                max_length, suppress = asr._limits(model, tokenizer, plan, len(prompt))
                for padding, features in inputs.items():
                    output = model.encode(features)
                    decoded = asr._assess(asr._generate(whisper, output, [prompt], 1, max_length, suppress)[0], tokenizer,
                                          len(prompt), max_length)
                    if asr._needs_more(decoded, plan, cfg):
                        decoded = asr._settle(whisper, output, prompt, tokenizer, cfg, plan, decoded)
                    tokens = decoded.result.sequences_ids[0]
                    add(f"{window:g}/{padding}", text, " ".join(s.text for s in asr._segments(model, tokenizer, tokens, duration)))
        length = np.mean([len(a) / SR for _, a in utterances])
        cells = " ".join(f"{errors.get(f'{w:g}/audio', 0) / words:11.3f} {errors.get(f'{w:g}/mel', 0) / words:9.3f}" for w in windows)
        print(f"{bucket:14} {len(utterances):>3} {length:5.1f} | {errors['transcribe()'] / words:12.3f} | {cells}")
    return 0


def _feature_cpu(audio: np.ndarray) -> float:
    """CPU seconds of the log-mel an audio model would need for this utterance (CPU torch)."""
    import torch

    from core.features import compute_features

    torch.set_num_threads(1)
    start = time.process_time()
    compute_features([audio], device="cpu")
    return time.process_time() - start


def _partial_cost(whisper, cfg) -> None:
    """ms of a partial's interim text: a short-window transcription of the last N seconds."""
    from core.asr import transcribe
    from testsupport.speech import synthesize

    speech = synthesize(CORPUS["8-15 s"][0])
    cells = []
    for seconds in (2, 4, 6, 8):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            transcribe(whisper, speech[-seconds * SR :], "en", cfg)
            times.append((time.perf_counter() - start) * 1000.0)
        cells.append(f"{seconds} s: {np.median(times):.0f} ms")
    print("interim text for a partial (median of 3), last " + ", ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
