"""Analyze a whole audio file offline: one utterance message body per line of JSONL.

The same pipeline as the live monitor (VAD segmenter, Whisper, the emotion bundle), run as fast
as the machine goes, so a file gives the same utterances it would give played live. Each line is
the body of a feed `utterance` message (docs/feed.md) without the session fields.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from trainer.errors import UserError

BLOCK_S = 1.0  # audio handed to the segmenter per call; any size gives the same utterances


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio or video file in any format ffmpeg (PyAV) decodes")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write, one utterance per line")
    parser.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en, auto (default: asr.language)")
    parser.add_argument("--bundle", help="emotion bundle folder or 'default' (default: emotion.bundle)")


def decode(path: Path):
    """The file as 16 kHz mono float32, or a UserError that names the file and the problem."""
    from faster_whisper import decode_audio

    if not path.is_file():
        raise UserError(f"audio file {path} does not exist")
    try:
        return decode_audio(str(path), sampling_rate=16_000)
    except Exception as exc:  # PyAV raises its own error types per container and codec
        raise UserError(f"cannot decode {path} ({type(exc).__name__}: {exc}); give an audio file ffmpeg can read") from None


def run(args: argparse.Namespace) -> int:
    from streamer.analyzer import Analyzer
    from streamer.segmenter import BadAudio, Segmenter, Utterance
    from trainer.config import load_config, override

    config = override(load_config(args.config), {"asr.language": args.language, "emotion.bundle": args.bundle})
    audio = decode(args.file)
    started = time.perf_counter()
    analyzer = Analyzer(config)
    segmenter = Segmenter(config.vad)
    block = int(BLOCK_S * 16_000)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for begin in range(0, len(audio) + block, block):
            try:
                events = segmenter.push(audio[begin : begin + block]) if begin < len(audio) else segmenter.flush()
            except BadAudio as exc:
                raise UserError(f"{args.file}: {exc}") from None
            for event in events:
                if not isinstance(event, Utterance):
                    continue  # live previews mean nothing offline
                body = analyzer.analyze(event)
                if body is not None:
                    out.write(json.dumps(body, ensure_ascii=False) + "\n")
                    out.flush()
                    written += 1
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(analyzer.filtered.items())) or "none"
    print(
        f"{args.file}: {len(audio) / 16_000:.1f} s of audio, {written} utterances written to {args.out} "
        f"(dropped: {dropped}) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0
