"""The recording server's memory under concurrent requests for a long recording's audio.

    .venv/bin/python -m bench.range_bench [--hours 1] [--concurrent 16]

A recorded session with an hour of audio (16 kHz PCM16, 115 MB) is served by the daemon's own
FeedServer in a process of its own; `--concurrent` clients at once ask for `/api/sessions/ID/audio.wav`
as a player does (`Range: bytes=0-1`, then an open-ended `bytes=0-`, then a range in the middle),
and two ask for the whole file without a range. The server's peak resident memory is sampled from
/proc every 10 ms; the idle server is the baseline. (Issue 13: 16 × `bytes=0-1` used to take the
daemon from 298 MB to 1,712 MB.)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.fanout_bench import rss_mb

SESSION = "20260101-000000-0000"


def recording(folder: Path, hours: float) -> Path:
    """A session folder as the recorder writes it, with `hours` of (quiet) audio."""
    session = folder / SESSION
    session.mkdir(parents=True)
    second = b"\x01\x00" * 16000
    with wave.open(str(session / "audio.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        for _ in range(int(hours * 3600)):
            w.writeframes(second)
    (session / "feed.jsonl").write_text(json.dumps({"type": "status", "session": SESSION, "seq": 1, "t": 0.0}) + "\n")
    (session / "meta.json").write_text(json.dumps({"id": SESSION, "started": "2026-01-01T00:00:00+00:00"}))
    return session


def serve(record: str, port_out, done) -> None:
    from streamer import feed
    from streamer.config import ServerConfig
    from streamer.rooms import Rooms
    from streamer.server import FeedServer

    async def main() -> None:
        log = feed.SessionLog("range-bench")
        server = FeedServer(ServerConfig(port=0), Rooms.single(log, lambda: {"schema": 1}), record_dir=Path(record))
        await server.start()
        port_out.put(server.port)
        while not done.is_set():
            await asyncio.sleep(0.05)
        await server.close()

    asyncio.run(main())


def fetch(url: str, byte_range: str | None) -> int:
    request = urllib.request.Request(url, headers={"Range": byte_range} if byte_range else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return len(response.read())
    except urllib.error.HTTPError as exc:  # 503: a full download beyond FULL_AT_ONCE, told to retry
        return -exc.code


def peak_during(pid: int, work) -> tuple[float, object]:
    """(peak RSS MB of `pid` while `work()` runs, its result)."""
    peak, stop = rss_mb(pid), threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()
    finally:
        stop.set()
        sampler.join()
    return peak, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--concurrent", type=int, default=16)
    args = parser.parse_args()
    record = Path(tempfile.mkdtemp(prefix="range-bench-"))
    size = (recording(record, args.hours) / "audio.wav").stat().st_size
    ctx = mp.get_context("spawn")
    port_out, done = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(str(record), port_out, done))
    server.start()
    port = port_out.get(timeout=60)
    url = f"http://127.0.0.1:{port}/api/sessions/{SESSION}/audio.wav"
    time.sleep(0.5)
    idle = rss_mb(server.pid)
    rows = [("idle server (baseline)", idle, "")]
    middle = size // 2
    cases = [
        (f"{args.concurrent} x Range: bytes=0-1", ["bytes=0-1"] * args.concurrent),
        (f"{args.concurrent} x Range: bytes=0- (open-ended)", ["bytes=0-"] * args.concurrent),
        (f"{args.concurrent} x Range: a MiB in the middle", [f"bytes={middle}-{middle + (1 << 20) - 1}"] * args.concurrent),
        ("2 x the whole file, no Range", [None, None]),
    ]
    with ThreadPoolExecutor(max(args.concurrent, 2)) as pool:
        for what, ranges in cases:
            peak, sizes = peak_during(server.pid, lambda: list(pool.map(lambda r: fetch(url, r), ranges)))
            rows.append((what, peak, f"{sum(s for s in sizes if s > 0) / 2**20:.1f} MiB in {len(sizes)} responses"))
    done.set()
    server.join(30)
    print(f"\naudio.wav of {args.hours:g} h: {size / 2**20:.0f} MiB\n")
    print("| requests | server peak RSS MB | vs idle | served |")
    print("|---|---|---|---|")
    for what, peak, served in rows:
        print(f"| {what} | {peak:.0f} | {'baseline' if not served else f'+{peak - idle:.0f} MB'} | {served} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
