"""Analyze audio files offline: one utterance message body per line of JSONL, for one file or an archive.

It is the live pipeline itself: each file is played as fast as the machine goes through the same
`Session` a live run uses (core/audio.py decoding, the VAD segmenter, Whisper, the emotion
bundle), so `analyze FILE` gives exactly the utterances `run --source file:FILE --fast` gives.
Each line is the body of a feed `utterance` message (docs/feed.md) without the session fields;
problems with the audio (NaN samples, a file that cannot be decoded) are said on the terminal, as
a live run says them in the feed.

One file and `--out X.jsonl` writes that file. Several inputs, a folder or a glob make `--out` a
folder: one JSONL per input (mirroring relative paths), `summary.json`, resumable, several files in
flight on one copy of the models, or on a Ray cluster with `--ray` (streamer/archive.py,
streamer/cluster.py). Exit status: 0 when every file succeeded, 1 when some failed (each named with
its reason), 2 for a problem with the command itself.
"""
from __future__ import annotations

import argparse
import asyncio
import io
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
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="audio or video files (any format FFmpeg decodes), folders (searched recursively) or globs")
    parser.add_argument("--out", type=Path, required=True,
                        help="the JSONL file to write for one file; a folder for several inputs, a folder or a glob")
    parser.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en, auto (default: asr.language)")
    parser.add_argument("--bundle", help="emotion bundle folder or 'default' (default: emotion.bundle)")
    parser.add_argument("--overwrite", action="store_true", help="analyse again files whose result is already complete")
    parser.add_argument("--jobs", type=int, default=2, help="files in flight at once on one copy of the models (default 2)")
    parser.add_argument("--ray", metavar="auto|ADDRESS",
                        help="run on a Ray cluster: 'auto' (the cluster this machine belongs to) or HOST:PORT "
                             "(pip install .[cluster])")
    parser.add_argument("--workers", type=int, default=0,
                        help="with --ray: model actors (default: one per GPU, else per 2 CPUs of the cluster)")
    add_speaker_arguments(parser)


def utterance_line(message: dict[str, Any]) -> str:
    """An `utterance` message as an analyze output line: its body, without the session fields."""
    return json.dumps({k: v for k, v in message.items() if k not in SESSION_FIELDS}, ensure_ascii=False)


async def analyze_file(source: Path | bytes, config: Config, segmenter: Any, analyzer: Any, out: IO[str], *,
                       name: str | None = None) -> dict[str, Any]:
    """Run `source` (a path, or a file's bytes) through a Session, writing each utterance to `out`
    as it is published; returns the `session_end` body plus the problems reported (`errors`)."""
    from streamer.session import Session

    block = int(config.audio.block_ms * sources.SAMPLE_RATE / 1000)
    source_name = name or str(source)

    def chunks():
        # Bytes (a file sent to a Ray actor) are decoded under the file's name, so messages name it.
        data = source
        if isinstance(source, bytes):
            data = io.BytesIO(source)
            data.name = source_name
        return sources.decode_file(data, mono=config.audio.channels != "split")

    playback = sources.PlaybackSource(f"file:{source_name}", chunks, realtime=False, block=block)
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
    session = Session(config, playback, segmenter, analyzer, log)
    await session.run()
    return {**end, "errors": errors}


def one_file(path: Path, out_path: Path, config: Config) -> int:
    from streamer.run import check_stereo, load_pipeline

    if config.audio.channels == "split":
        check_stereo(path)
    started = time.perf_counter()
    segmenter, analyzer = load_pipeline(config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        result = asyncio.run(analyze_file(path, config, segmenter, analyzer, out))
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(analyzer.filtered.items())) or "none"
    print(
        f"{path}: {result.get('duration', 0.0):.1f} s of audio, {result.get('utterances', 0)} utterances written to "
        f"{out_path} (dropped: {dropped}) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 1 if result.get("reason") == "source failed" else 0


def archive(args: argparse.Namespace, config: Config) -> int:
    from tqdm import tqdm

    from core.audio import duration_s
    from streamer import archive as jobs_mod

    jobs = jobs_mod.plan(args.paths, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = jobs_mod.Summary(args.out)
    summary.keep(jobs)
    run, skipped = jobs_mod.todo(jobs, summary, args.overwrite)
    for result in skipped:
        summary.record(result)
    lengths = {job.input: duration_s(job.input) or 0.0 for job in run}
    total_h = sum(lengths.values()) / 3600
    print(f"analyze: {len(jobs)} files, {len(skipped)} complete from an earlier run, {len(run)} to analyse "
          f"({total_h:.2f} h of audio) into {args.out}", file=sys.stderr)
    failed: list[jobs_mod.FileResult] = []
    bar = tqdm(total=round(total_h, 4), unit="h", bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}] {postfix}",
               file=sys.stderr, disable=None)
    finished = 0

    def done(result: jobs_mod.FileResult) -> None:
        nonlocal finished
        finished += 1
        summary.record(result)
        if result.failed:
            failed.append(result)
            tqdm.write(f"analyze: {result.input} failed: {result.error}", file=sys.stderr)
        bar.set_postfix_str(f"{finished}/{len(run)} files")

    def progress(seconds: float) -> None:
        bar.n = round(seconds / 3600, 4)
        bar.refresh()

    started = time.perf_counter()
    try:
        if args.ray:
            from streamer import cluster

            cluster.run(run, config, args.ray, args.workers, done, progress)
        else:
            asyncio.run(jobs_mod.run_local(run, config, max(1, args.jobs), done, progress))
    finally:
        bar.close()
    wall = time.perf_counter() - started
    analysed_s = sum(r["audio_s"] for r in summary.files.values() if not r.get("skipped") and not r.get("error"))
    speed = f", {analysed_s / wall:.1f}x real time" if wall > 0 and analysed_s else ""
    print(f"analyze: {len(run) - len(failed)} of {len(run)} files analysed in {wall:.1f} s{speed}; "
          f"summary in {summary.path}", file=sys.stderr)
    for result in failed:
        print(f"analyze: FAILED {result.input}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    config = override(load_config(args.config), {"asr.language": args.language, "emotion.bundle": args.bundle,
                                                  "audio.realtime": False, **speaker_overrides(args)})
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs} must be at least 1")
    single = len(args.paths) == 1 and Path(args.paths[0]).expanduser().is_file() and not args.ray
    if single and not args.out.is_dir():
        return one_file(Path(args.paths[0]).expanduser(), args.out, config)
    if len(args.paths) == 1 and not Path(args.paths[0]).expanduser().exists() and not any(c in args.paths[0] for c in "*?["):
        raise UserError(f"audio file {args.paths[0]} does not exist")
    return archive(args, config)
