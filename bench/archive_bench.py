"""How fast archives are analysed: x real time for one file, for a folder with several files in flight,
and on a local Ray instance with 1 and 2 workers, against the one-file-at-a-time run of the same folder.

    .venv/bin/python -m bench.archive_bench [--files 4] [--sentences 12] [--jobs 1,2,4] [--no-ray]

Every row is `python -m streamer analyze ...` as a user runs it (model loading and, for Ray, the
instance's actors included), on espeak-ng English speech with 1 s pauses, so rows compare within
one run. The Ray instance is started on loopback for the run and stopped after it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testsupport.speech import SENTENCES, speech_with_silences

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    what: str
    audio_s: float
    wall_s: float
    baseline: "Row | None" = None

    def line(self) -> str:
        speed = self.audio_s / self.wall_s
        vs = f"{speed / (self.baseline.audio_s / self.baseline.wall_s):.2f}x" if self.baseline else "baseline"
        return f"| {self.what} | {self.audio_s:.0f} | {self.wall_s:.1f} | {speed:.1f}x | {vs} |"


def analyze(paths: list[str], out: Path, extra: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "streamer", "analyze", *paths, "--out", str(out), "--language", "en",
                           *extra], cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


def audio_seconds(out: Path) -> float:
    return sum(f["audio_s"] for f in json.loads((out / "summary.json").read_text())["files"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=12, help="sentences per file (about 5 s each with its pause)")
    parser.add_argument("--jobs", default="1,2,4", help="files in flight to measure locally")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    folder = work / "in"
    for i in range(args.files):
        sentences = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(args.sentences)]
        speech_with_silences(sentences, 1.0, folder / f"call{i}.wav", noise_db=-60)
    one = work / "one.jsonl"
    rows: list[Row] = []
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streamer", "analyze", str(folder / "call0.wav"), "--out", str(one),
                    "--language", "en"], cwd=ROOT, check=True, capture_output=True)
    one_wall = time.perf_counter() - start
    from core.audio import duration_s

    rows.append(Row("one file", duration_s(folder / "call0.wav") or 0.0, one_wall))
    base = None
    for jobs in [int(j) for j in args.jobs.split(",")]:
        out = work / f"local{jobs}"
        wall = analyze([str(folder)], out, ["--jobs", str(jobs)])
        row = Row(f"folder, {jobs} in flight", audio_seconds(out), wall, base)
        base = base or row
        rows.append(row)
    if not args.no_ray:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        ray = str(Path(sys.executable).with_name("ray"))
        port = "6411"
        subprocess.run([ray, "start", "--head", "--port", port, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
                        "--include-dashboard", "false", "--disable-usage-stats"], env=env, check=True,
                       capture_output=True, cwd=work)
        try:
            for workers in (1, 2):
                out = work / f"ray{workers}"
                wall = analyze([str(folder)], out, ["--ray", f"127.0.0.1:{port}", "--workers", str(workers)], env)
                rows.append(Row(f"local Ray, {workers} worker{'s' if workers > 1 else ''}", audio_seconds(out), wall, base))
        finally:
            subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
    print(f"archive analysis, {args.files} files of {args.sentences} sentences, {os.cpu_count()} CPUs (wall includes model loading)")
    print("| run | audio s | wall s | x real time | vs folder, 1 in flight |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
