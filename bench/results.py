"""Run every benchmark in a quick mode and write bench/RESULTS.md: the latest figures, the machine they
ran on, and the command behind each table.

    .venv/bin/python -m bench.results [--only NAME,NAME] [--out bench/RESULTS.md]

With --only, the named sections of an existing file are replaced and the rest kept.

About 50 minutes on the 2-core CI machine (the eager and rooms benches run at their full size). Each bench prints its own table against a baseline
from the same run; this runner only collects them. Figures taken while other work shared the
machine are noisy: compare rows within one table, not across runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> arguments of `python -m bench.NAME` in its quick mode
BENCHES: dict[str, list[str]] = {
    "latency_bench": ["--per-bucket", "4"],
    "eager_bench": ["--per-bucket", "24", "--seeds", "0,1"],  # issue 12's measure, not a quick one
    "replay_bench": ["--sentences", "12", "--repeats", "1"],
    "fanout_bench": ["--messages", "200"],
    "range_bench": ["--hours", "1"],
    "memory_bench": ["--minutes", "120"],
    "archive_bench": ["--files", "4", "--sentences", "12"],
    "rooms_bench": ["--rooms", "1,2,4,8", "--seconds", "60"],  # issue 11's measure
    "speakers_bench": ["--turns", "8"],
    "prepare_bench": ["--clips", "500"],
    "train_bench": ["--per-class", "12", "--epochs", "2", "--fit-repeat", "1", "--skip", "text"],
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), float("nan"))
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return f"{os.cpu_count()} x {cpu}, {memory:.0f} GiB, {gpu}, Python {platform.python_version()}, {platform.platform()}"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def merged(previous: str, fresh: dict[str, str]) -> list[str]:
    """The sections of an earlier RESULTS.md in their order, with those in `fresh` replaced (or added)."""
    old = {part.split("\n", 1)[0]: "## " + part for part in previous.split("\n## ")[1:]}
    sections = [fresh.pop(name, text) for name, text in old.items()]
    return sections + list(fresh.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    sections = []
    for name in names:
        command = [sys.executable, "-m", f"bench.{name}", *BENCHES[name]]
        shown = " ".join([".venv/bin/python", "-m", f"bench.{name}", *BENCHES[name]])
        print(f"results: {shown}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED (exit {done.returncode}):\n{done.stderr[-2000:]}"
        sections.append(f"## {name}\n\n`{shown}` ({seconds:.0f} s, {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, "
                        f"commit {commit()})\n\n{output}\n")
    header = (f"# Benchmark results\n\nRegenerate with `.venv/bin/python -m bench.results`. "
              f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} on {machine()}; each section says when and on "
              "which commit it ran. Each table compares against a baseline from its own run; the machine may have "
              "been shared.\n")
    if args.only and args.out.exists():  # rerun some: keep the others' sections, each says its own commit
        sections = merged(args.out.read_text(encoding="utf-8"), dict(zip(names, sections)))
    args.out.write_text(header + "\n" + "\n".join(sections), encoding="utf-8")
    print(f"results: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
