"""Analyze a whole audio file offline: one utterance message body per line of JSONL.

It is the live pipeline itself: the file is played as fast as the machine goes through the same
`Session` a live run uses (core/audio.py decoding, the VAD segmenter, Whisper, the emotion
bundle), so `analyze FILE` gives exactly the utterances `run --source file:FILE --fast` gives.
Each line is the body of a feed `utterance` message (docs/feed.md) without the session fields;
problems with the audio (NaN samples, a file that cannot be decoded) are said on the terminal, as
a live run says them in the feed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from core.errors import UserError
from streamer import feed, sources
from streamer.config import Config, load_config, override
from streamer.run import add_speaker_arguments, speaker_overrides

SESSION_FIELDS = ("type", "session", "seq", "t")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="audio or video file in any format FFmpeg (PyAV) decodes")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write, one utterance per line")
    parser.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en, auto (default: asr.language)")
    parser.add_argument("--bundle", help="emotion bundle folder or 'default' (default: emotion.bundle)")
    add_speaker_arguments(parser)


def utterance_line(message: dict[str, Any]) -> str:
    """An `utterance` message as an analyze output line: its body, without the session fields."""
    return json.dumps({k: v for k, v in message.items() if k not in SESSION_FIELDS}, ensure_ascii=False)


async def analyze_file(path: Path, config: Config, segmenter: Any, analyzer: Any, out: IO[str]) -> dict[str, Any]:
    """Run `path` through a Session, writing each utterance to `out` as it is published; returns
    the `session_end` body plus the problems reported on the way (`errors`)."""
    from streamer.session import Session

    block = int(config.audio.block_ms * sources.SAMPLE_RATE / 1000)
    source = sources.file_source(str(path), realtime=False, block=block, mono=config.audio.channels != "split")
    log = feed.SessionLog(feed.new_session_id())
    errors: list[dict[str, Any]] = []
    end: dict[str, Any] = {}

    def on_entry(entry: feed.Entry) -> None:
        message = entry.message
        if message["type"] == "utterance":
            out.write(utterance_line(message) + "\n")
            out.flush()
        elif message["type"] == "error":
            errors.append({"code": message["code"], "message": message["message"]})
        elif message["type"] == "session_end":
            end.update({k: v for k, v in message.items() if k not in SESSION_FIELDS})

    log.listen(on_entry)
    session = Session(config, source, segmenter, analyzer, log)
    await session.run()
    return {**end, "errors": errors}


def run(args: argparse.Namespace) -> int:
    from streamer.run import check_stereo, load_pipeline

    config = override(load_config(args.config), {"asr.language": args.language, "emotion.bundle": args.bundle,
                                                  "audio.realtime": False, **speaker_overrides(args)})
    if not args.file.is_file():
        raise UserError(f"audio file {args.file} does not exist")
    if config.audio.channels == "split":
        check_stereo(args.file)
    started = time.perf_counter()
    segmenter, analyzer = load_pipeline(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        result = asyncio.run(analyze_file(args.file, config, segmenter, analyzer, out))
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(analyzer.filtered.items())) or "none"
    print(
        f"{args.file}: {result.get('duration', 0.0):.1f} s of audio, {result.get('utterances', 0)} utterances written to "
        f"{args.out} (dropped: {dropped}) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 1 if result.get("reason") == "source failed" else 0
