"""How fast a recorded session is re-analysed and replayed, and what the daemon costs beyond ASR.

    .venv/bin/python -m bench.replay_bench [--sentences 24] [--repeats 3] [--language en] [--audio FILE]

Builds a recorded session (espeak-ng English sentences with 1 s pauses, or --audio FILE), then on
that same audio, in this process unless said otherwise:

1. baselines, the work that has to happen anyway, with no daemon around it: the VAD segmenter
   over the audio in 1 s blocks; Whisper alone on each utterance it found; `Analyzer.analyze`
   (Whisper + emotion bundle) on each, in a plain loop;
2. the daemon: `run --source session:DIR --fast` as the daemon does it (frame queue, VAD thread,
   analyzer thread, session log, fan-out to one WebSocket client, recorder);
3. the same as a user runs it: `python -m streamer run --source session:DIR --fast --exit-at-end`
   in a subprocess, from launch to exit (start-up and model loading included), once;
4. `replay --fast` of an hour-long feed (the daemon's recorded messages, repeated and renumbered)
   to one WebSocket client, once.

Speed is audio seconds per wall second (x real time); CPU is process CPU time (all threads).
1 and 2 are repeated and the median is shown, because this machine is shared. "Everything but
ASR" is the daemon's CPU minus Whisper's alone: VAD, emotion models, queues, threads, log,
fan-out and recorder. Compare rows of one run, not runs on different machines.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from websockets.asyncio.client import connect

from core.asr import transcribe
from streamer import feed, recorder, replay, sources
from streamer import run as run_command
from streamer.config import Config, override
from streamer.rooms import DEFAULT_ROOM, Rooms
from streamer.segmenter import Segmenter, Utterance
from streamer.server import FeedServer
from streamer.session import Session

ROOT = Path(__file__).resolve().parents[1]

HOUR_S = 3600.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, CPU s) of one call."""
    wall, cpu = time.perf_counter(), cpu_s()
    result = work()
    return result, time.perf_counter() - wall, cpu_s() - cpu


def make_recording(root: Path, args: argparse.Namespace) -> Path:
    """A session folder holding audio.wav and meta.json, which is all `session:DIR` needs."""
    if args.audio:
        audio = np.concatenate(list(sources.decode_file(Path(args.audio))))
    else:
        from testsupport.speech import SENTENCES, speech_with_silences

        sentences = [SENTENCES[i % len(SENTENCES)] for i in range(args.sentences)]
        wav, _ = speech_with_silences(sentences, 1.0, root / "speech.wav", noise_db=-60)
        audio = np.concatenate(list(sources.decode_file(wav)))
    log = feed.SessionLog(feed.new_session_id())
    rec = recorder.Recorder(root / "source", log, {"source": "bench"})
    rec.write_audio(audio)
    rec.close({})
    return rec.folder


def segment(config: Config, audio: np.ndarray) -> list[Utterance]:
    segmenter = Segmenter(config.vad)
    events = [e for i in range(0, len(audio), 16000) for e in segmenter.push(audio[i : i + 16000])]
    return [e for e in events + segmenter.flush() if isinstance(e, Utterance)]


async def client(port: int, counted: list[int]) -> None:
    """One dashboard-like client reading the whole session."""
    async with connect(f"ws://127.0.0.1:{port}/ws?since=0", max_size=None) as ws:
        async for frame in ws:
            counted[0] += 1
            if json.loads(frame)["type"] == "session_end":
                return


async def daemon_run(config: Config, analyzer: Any, out: Path) -> dict[str, Any]:
    log = feed.SessionLog(feed.new_session_id())
    server = FeedServer(config.server, Rooms.single(log, lambda: {}))
    rec = recorder.Recorder(out, log, {"source": config.audio.source})
    run = Session(config, run_command.make_source(config), Segmenter(config.vad), analyzer, log,
                          server=server, recorder=rec)
    await server.start()
    counted = [0]
    reader = asyncio.create_task(client(server.port, counted))
    while server.clients == 0:
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter(), cpu_s()
    await run.run()
    await reader
    result = {"wall_s": time.perf_counter() - wall, "cpu_s": cpu_s() - cpu, "utterances": run.counters.utterances,
              "messages": counted[0], "folder": rec.folder}
    await server.close()
    return result


def cli_run(config: Config, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the whole command, start-up and model loading included."""
    command = [sys.executable, "-m", "streamer", "run", "--source", f"session:{folder}", "--fast", "--exit-at-end",
               "--language", config.asr.language, "--port", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def hour_of_feed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded messages repeated, renumbered and shifted in time until they span an hour."""
    body = [m for m in messages if m["type"] != "session_end"]
    span = max(m["t"] for m in body) + 1.0
    out: list[dict[str, Any]] = []
    for copy in range(int(HOUR_S // span) + 1):
        out += [{**m, "seq": len(out) + i + 1, "t": round(m["t"] + copy * span, 3)} for i, m in enumerate(body)]
    return out


async def replay_run(config: Config, messages: list[dict[str, Any]]) -> dict[str, Any]:
    log = feed.SessionLog(messages[0]["session"])
    server = FeedServer(config.server, Rooms.single(log, lambda: {}))
    await server.start()
    counted = [0]
    reader = asyncio.create_task(client(server.port, counted))
    while server.clients == 0:
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter(), cpu_s()
    await replay.publish(log, messages, None, messages[-1]["t"], lambda: server.backlog(DEFAULT_ROOM),
                          config.server.client_queue)
    await reader
    result = {"wall_s": time.perf_counter() - wall, "cpu_s": cpu_s() - cpu, "messages": counted[0]}
    await server.close()
    return result


def median(runs: list[tuple[float, float]]) -> tuple[float, float, str]:
    walls = [w for w, _ in runs]
    return statistics.median(walls), statistics.median(c for _, c in runs), f"{min(walls):.2f}-{max(walls):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=24, help="espeak-ng sentences to speak (default 24, ~90 s)")
    parser.add_argument("--audio", help="analyse this file instead of espeak-ng speech")
    parser.add_argument("--language", default="en")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_recording(Path(tmp), args)
        config = override(Config(), {"audio.source": f"session:{folder}", "audio.realtime": False,
                                     "asr.language": args.language, "server.port": 0})
        _, analyzer = run_command.load_pipeline(config)
        audio = recorder.read_audio(folder / "audio.wav")
        audio_s = len(audio) / 16000
        utterances = segment(config, audio)
        analyzer.analyze(utterances[0])  # warm-up: the first call pays for allocations the rest reuse
        runs: dict[str, list[tuple[float, float]]] = {"vad": [], "asr": [], "analyzer": [], "daemon": []}
        for repeat in range(args.repeats):
            for name, work in (
                ("vad", lambda: segment(config, audio)),
                ("asr", lambda: [transcribe(analyzer.whisper, u.audio, config.asr.language, config.asr) for u in utterances]),
                ("analyzer", lambda: [analyzer.analyze(u) for u in utterances]),
            ):
                runs[name].append(measured(work)[1:])
            live = asyncio.run(daemon_run(config, analyzer, Path(tmp) / f"out{repeat}"))
            runs["daemon"].append((live["wall_s"], live["cpu_s"]))
        cli = cli_run(config, folder)
        _, recorded = replay.load_recording(live["folder"])
        hour = hour_of_feed(recorded)
        again = asyncio.run(replay_run(config, hour))

    rows = [
        ("baseline: VAD segmenter alone", *median(runs["vad"]), audio_s),
        ("baseline: Whisper alone", *median(runs["asr"]), audio_s),
        ("baseline: analyzer (Whisper + emotion)", *median(runs["analyzer"]), audio_s),
        ("daemon: run --source session: --fast", *median(runs["daemon"]), audio_s),
        ("CLI run ... --fast incl. start-up, load", *cli, "1 run", audio_s),
        (f"replay --fast, 1 h feed ({again['messages']} msgs)", again["wall_s"], again["cpu_s"], "1 run", hour[-1]["t"]),
    ]
    print(f"audio: {audio_s:.1f} s, {len(utterances)} utterances, language {args.language}; "
          f"Whisper cpu_threads={config.asr.cpu_threads}; median of {args.repeats} runs (wall range)\n")
    print(f"{'run':<42} {'wall s':>7} {'range':>11} {'x real time':>12} {'CPU s':>7}")
    for name, wall, cpu, spread, span in rows:
        print(f"{name:<42} {wall:>7.2f} {spread:>11} {span / wall:>12.1f} {cpu:>7.2f}")
    daemon_cpu, asr_cpu = median(runs["daemon"])[1], median(runs["asr"])[1]
    base_cpu = median(runs["vad"])[1] + median(runs["analyzer"])[1]
    print(f"\ndaemon CPU on everything but ASR: {daemon_cpu - asr_cpu:.2f} s of {daemon_cpu:.2f} s "
          f"({(daemon_cpu - asr_cpu) / audio_s * 1000:.1f} ms per second of audio)")
    print(f"  beyond the VAD + analyzer baselines (queues, threads, log, fan-out, recorder): {daemon_cpu - base_cpu:+.2f} s")
    print(f"daemon messages: {live['messages']} ({live['utterances']} utterances); "
          f"replay: {again['messages'] / again['wall_s']:.0f} messages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
