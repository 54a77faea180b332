"""How fast prepare is, first run and cached run, on synthetic clips in the delivered layout.

Not a test: timings depend on the machine. Builds the make-fixture dataset sized to ``--clips``
wavs of ``--seconds`` each (48 kHz PCM16 in ZIPs, cp949 CSVs) in a temporary folder, runs
prepare on it twice into the same output folder, and prints rows, seconds and rows/second for
each run and the speed-up the decode cache gives.

    .venv/bin/python -m bench.prepare_bench [--clips 2000] [--seconds 3] [--workers N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from trainer import fixture, prepare

# make-fixture writes, besides rows_per_label per label, 3 other-emotion rows and 1 wav
# without a row that have audio (and 3 rows without audio)
EXTRA_CLIPS = 4


def timed_prepare(aihub: Path, out: Path, workers: int) -> tuple[float, dict]:
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    args = parser.parse_args(["--aihub", str(aihub), "--out", str(out), "--workers", str(workers)])
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        report = prepare.prepare(args)
    return time.perf_counter() - started, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="wavs in the synthetic delivery")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of every clip")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rows_per_label = max(1, (args.clips - EXTRA_CLIPS) // 4)

    with tempfile.TemporaryDirectory(prefix="prepare_bench_") as tmp:
        aihub, out = Path(tmp) / "aihub", Path(tmp) / "out"
        started = time.perf_counter()
        summary = fixture.write_dataset(aihub, rows_per_label, args.seed, duration=args.seconds)
        size = sum(p.stat().st_size for p in aihub.iterdir()) / 2**20
        print(f"built {4 * rows_per_label + EXTRA_CLIPS} clips of {args.seconds:g} s "
              f"({summary.rows} CSV rows, {size:.0f} MiB) in {time.perf_counter() - started:.1f} s; "
              f"workers={args.workers}, cpus={os.cpu_count()}", file=sys.stderr)
        first_s, first = timed_prepare(aihub, out, args.workers)
        cached_s, cached = timed_prepare(aihub, out, args.workers)

    print(f"{'run':<8}{'csv rows':>10}{'kept':>7}{'decoded':>9}{'cached':>8}{'seconds':>10}{'rows/s':>10}")
    for name, seconds, report in (("first", first_s, first), ("cached", cached_s, cached)):
        rows = sum(r["rows"] for r in report["releases"].values())
        print(f"{name:<8}{rows:>10}{report['kept']:>7}{report['audio']['decoded']:>9}"
              f"{report['audio']['from_cache']:>8}{seconds:>10.2f}{rows / seconds:>10.0f}")
    print(f"speed-up of the cached run: {first_s / cached_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
