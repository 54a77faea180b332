"""The daemon's memory over a 2-hour session: does anything grow with the session's length?

    .venv/bin/python -m bench.memory_bench [--minutes 120] [--every 60]

A recording of `--minutes` of quiet room noise with a spoken sentence (espeak-ng) every `--every`
seconds goes through `python -m streamer run --source file:... --fast --record DIR`, the daemon as a
user runs it: VAD over all of it, Whisper and the emotion model on every sentence, every message
kept in the session log (for `since=0`) and written to the recording, with one dashboard-like
client following the feed. The daemon's resident memory is sampled as the audio position (the
latest utterance's end) advances; the first row, right after the first utterance (models loaded),
is the baseline. Played as fast as possible, the session sends a status a wall second, not an audio
second, so the log holds fewer status messages than a real 2 hours would (about 1 KiB each: 7,200
of them would add some 7 MB; the bench prints the log's size too).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from testsupport.browser import free_port
from testsupport.speech import SENTENCES, synthesize, trim

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def long_recording(path: Path, minutes: float, every_s: float) -> None:
    rng = np.random.default_rng(0)
    speech = [trim(synthesize(s)) for s in SENTENCES]
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
        for i in range(int(minutes * 60 / every_s)):
            block = (rng.standard_normal(int(every_s * RATE)) * 10 ** (-60 / 20)).astype(np.float32)
            sentence = speech[i % len(speech)]
            block[RATE : RATE + len(sentence)] += sentence
            out.write(block)


async def follow(port: int, pid: int, samples: list[tuple[float, float, int]]) -> None:
    from websockets.asyncio.client import connect

    count = 0
    async with connect(f"ws://127.0.0.1:{port}/ws?since=0", max_size=None) as ws:
        async for frame in ws:
            message = json.loads(frame)
            count += 1
            if message.get("type") == "utterance":
                samples.append((message["end"] / 60, rss_mb(pid), count))
            if message.get("type") == "session_end":
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--every", type=float, default=60, help="seconds between spoken sentences")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    wav = work / "session.wav"
    long_recording(wav, args.minutes, args.every)
    port = free_port()
    daemon = subprocess.Popen([sys.executable, "-m", "streamer", "run", "--source", f"file:{wav}", "--fast",
                               "--record", str(work / "rec"), "--language", "en", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in daemon.stderr:
        if "serving http" in line:
            break
    samples: list[tuple[float, float, int]] = []
    started = time.perf_counter()
    asyncio.run(follow(port, daemon.pid, samples))
    wall = time.perf_counter() - started
    final = rss_mb(daemon.pid)
    daemon.terminate()
    daemon.wait(60)
    (folder,) = (work / "rec").iterdir()
    print(f"daemon memory over a {args.minutes:g}-minute session ({len(samples)} utterances, analysed in {wall:.0f} s); "
          f"log {samples[-1][2]} messages, feed.jsonl {(folder / 'feed.jsonl').stat().st_size / 1024:.0f} KiB")
    print("| audio position | RSS MB | vs first utterance |")
    print("|---|---|---|")
    base = samples[0][1]
    marks = sorted({0, *(m for m in (10, 30, 60, 90, 120, args.minutes) if m <= args.minutes)})
    for mark in marks:
        position, rss, _ = min(samples, key=lambda s: abs(s[0] - mark))
        print(f"| {position:.0f} min | {rss:.0f} | {rss - base:+.0f} MB |")
    print(f"| end of session | {final:.0f} | {final - base:+.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
