"""How many rooms one daemon holds at real time, against as many separate daemons.

    .venv/bin/python -m bench.rooms_bench [--rooms 1,2,4,8] [--seconds 60] [--no-separate]

Each room plays its own conversation of two espeak-ng voices (en-us+m3, en-us+f2) taking turns of
English sentences, 1 s apart, every fourth turn a backchannel ("Okay."), at real time
(`--source NAME=file:PATH`, as a room's microphone would deliver it), recorded with --record so
every utterance's `latency_ms.end_to_message` (VAD end of speech -> utterance sent) and the
session's dropped frames are read back from feed.jsonl. Rows:

- one daemon: `python -m streamer run --source r1=file:A --source r2=file:B ...`: one copy of
  the models, one batched Whisper queue for every room;
- separate daemons (the baseline): N `python -m streamer run --source file:X` processes at once,
  each with its own models.

A room holds real time when it drops no frames and its p95 end_to_message is at most 1.5 s.
CPU is the processes' user+system time over the run; RSS is the peak of their sum (sampled every
0.2 s). Start-up (model loading) is outside the latency figures but inside CPU.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.recorder import read_feed
from testsupport.browser import free_port
from testsupport.conversation import BACKCHANNELS, conversation, write
from testsupport.speech import SENTENCES

ROOT = Path(__file__).resolve().parents[1]
P95_LIMIT_MS = 1500.0


@dataclass
class Row:
    what: str
    rooms: int
    p50_ms: float
    p95_ms: float
    dropped: int
    utterances: int
    cpu_s: float
    rss_mb: float

    @property
    def holds(self) -> bool:
        return self.dropped == 0 and self.p95_ms <= P95_LIMIT_MS

    def line(self) -> str:
        return (f"| {self.what} | {self.rooms} | {self.utterances} | {self.p50_ms:.0f} | {self.p95_ms:.0f} | {self.dropped} "
                f"| {self.cpu_s:.0f} | {self.rss_mb:.0f} | {'yes' if self.holds else 'no'} |")


def talk(i: int, seconds: float, folder: Path) -> Path:
    """A conversation of about `seconds`, its sentences from a different place in the list per room."""
    count = max(2, round(seconds / 3.5))  # a turn and its gap are about 3.5 s
    turns = [(k % 2, BACKCHANNELS[k % len(BACKCHANNELS)] if k % 4 == 3 else SENTENCES[(3 * i + k) % len(SENTENCES)])
             for k in range(count)]
    audio, _ = conversation(turns, gap_s=1.0, seed=i)
    return write(audio, folder / f"room{i}.wav")


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def daemons(commands: list[list[str]], logs: Path) -> tuple[float, float]:
    """Run the daemons at once until they exit: (CPU s of all, peak MB of their summed RSS)."""
    procs = [subprocess.Popen([sys.executable, "-m", "streamer", "run", *command, "--port", str(free_port()),
                               "--language", "en", "--exit-at-end"], cwd=ROOT,
                              stdout=open(logs / f"daemon{i}.log", "wb"), stderr=subprocess.STDOUT)
             for i, command in enumerate(commands)]
    cpu, peak, running = 0.0, 0, {p.pid: p for p in procs}
    while running:
        peak = max(peak, sum(rss_kb(pid) for pid in running))
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"a daemon failed: {(logs / f'daemon{procs.index(running[pid])}.log').read_text()[-2000:]}")
                del running[pid]
        time.sleep(0.2)
    return cpu, peak / 1024


def measured(what: str, rooms: int, record: Path, cpu: float, rss: float) -> Row:
    latencies, dropped = [], 0
    for folder in record.iterdir():
        for message in read_feed(folder):
            if message["type"] == "utterance":
                latencies.append(message["latency_ms"]["end_to_message"])
            elif message["type"] == "session_end":
                dropped += message["dropped_frames"]
    p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float("nan"),) * 2
    return Row(what, rooms, float(p50), float(p95), dropped, len(latencies), cpu, rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", default="1,2,4,8", help="room counts to measure")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each room's recording")
    parser.add_argument("--no-separate", action="store_true", help="skip the separate-daemons baseline")
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rooms-bench-"))
    talks = [talk(i, args.seconds, work) for i in range(max(counts))]
    rows: list[Row] = []
    for n in counts:
        for separate in ([False] if args.no_separate or n == 1 else [False, True]):
            run = work / f"{n}-{'separate' if separate else 'one'}"
            record = run / "rec"
            run.mkdir()
            if separate:
                commands = [["--source", f"file:{talks[i]}", "--record", str(record)] for i in range(n)]
            else:
                commands = [[arg for i in range(n) for arg in ("--source", f"r{i}=file:{talks[i]}")] + ["--record", str(record)]]
            cpu, rss = daemons(commands, run)
            rows.append(measured("separate daemons" if separate else "one daemon", n, record, cpu, rss))
            print(rows[-1].line(), file=sys.stderr, flush=True)
    print(f"\nrooms at real time: each room {args.seconds:.0f} s of speech; os.cpu_count() = {os.cpu_count()}\n")
    print("| run | rooms | utterances | end_to_message p50 ms | p95 ms | dropped frames | CPU s | peak RSS MB | real time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.line())
    held = [row.rooms for row in rows if row.what == "one daemon" and row.holds]
    print(f"\nlargest room count one daemon holds at real time (no dropped frames, p95 <= {P95_LIMIT_MS:.0f} ms): "
          f"{max(held) if held else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
