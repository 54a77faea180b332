"""Archives: `analyze PATH... --out DIR` over folders and globs, resumable, on one machine or on a Ray
instance started here on loopback; real Whisper on real espeak-ng speech."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import UserError
from streamer.archive import inputs, plan
from testsupport.speech import SENTENCES, require_espeak, speech_with_silences

ROOT = Path(__file__).resolve().parents[1]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_inputs_are_files_folders_and_globs_with_names_relative_to_what_was_given(tmp_path):
    calls = tmp_path / "calls"
    touch(calls / "2026" / "a.wav"), touch(calls / "b.mp3"), touch(calls / "notes.txt"), touch(tmp_path / "x.flac")
    found = inputs([str(calls), str(tmp_path / "*.flac")])
    assert [name for _, name in found] == ["2026/a.wav", "b.mp3", "x.flac"]  # notes.txt is not audio
    jobs = plan([str(calls)], tmp_path / "out")
    assert [j.output for j in jobs] == [tmp_path / "out" / "2026" / "a.wav.jsonl", tmp_path / "out" / "b.mp3.jsonl"]
    assert jobs[0].partial.name == "a.wav.jsonl.part"


def test_bad_inputs_are_usage_errors_that_say_what_to_give(tmp_path):
    touch(tmp_path / "one" / "a.wav"), touch(tmp_path / "two" / "a.wav")
    with pytest.raises(UserError, match="would both be written as a.wav.jsonl"):
        inputs([str(tmp_path / "one" / "a.wav"), str(tmp_path / "two" / "a.wav")])
    with pytest.raises(UserError, match="matches no file"):
        inputs([str(tmp_path / "*.ogg")])
    with pytest.raises(UserError, match="does not exist"):
        inputs([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no audio files"):
        inputs([str(tmp_path / "empty")])
    with pytest.raises(UserError, match="is a file"):
        plan([str(tmp_path / "one")], tmp_path / "one" / "a.wav")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Three recordings (one in a sub-folder) and a file that is not audio."""
    require_espeak()
    root = tmp_path_factory.mktemp("archive") / "in"
    speech_with_silences(SENTENCES[:2], 0.8, root / "a.wav")
    speech_with_silences(SENTENCES[2:4], 0.8, root / "sub" / "b.wav")
    speech_with_silences(SENTENCES[4:6], 0.8, root / "c.wav")
    (root / "broken.wav").write_bytes(b"RIFF" + b"\x00garbage" * 300)
    return root


def analyze(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", "analyze", *args, "--language", "en"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def results(out: Path) -> dict[str, list[dict]]:
    """name -> utterances without the timings, which differ from run to run."""
    found = {}
    for path in sorted(out.rglob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        found[path.relative_to(out).as_posix()] = [{k: v for k, v in m.items() if k != "latency_ms"} for m in lines]
    return found


@pytest.fixture(scope="module")
def local_run(archive, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("local") / "out"
    return out, analyze(str(archive), "--out", str(out), "--jobs", "2")


@pytest.mark.slow
def test_a_folder_with_a_broken_file_gives_every_other_result_and_names_the_failure(archive, local_run, tmp_path):
    out, done = local_run
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stderr and "broken.wav" in done.stderr and "Traceback" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    by_name = {Path(f["input"]).relative_to(archive).as_posix(): f for f in summary["files"]}
    assert sorted(by_name) == ["a.wav", "broken.wav", "c.wav", "sub/b.wav"]
    assert "FFmpeg can decode" in by_name["broken.wav"]["error"] and by_name["broken.wav"]["output"] is None
    for name in ("a.wav", "c.wav", "sub/b.wav"):
        assert by_name[name]["error"] is None and by_name[name]["utterances"] == 2 and by_name[name]["audio_s"] > 5
    assert summary["totals"] == {"files": 4, "failed": 1, "audio_s": pytest.approx(sum(f["audio_s"] for f in summary["files"]), abs=0.01),
                                 "utterances": 6}
    got = results(out)
    assert sorted(got) == ["a.wav.jsonl", "c.wav.jsonl", "sub/b.wav.jsonl"]
    # several files in flight give what one file alone gives
    alone = analyze(str(archive / "sub" / "b.wav"), "--out", str(tmp_path / "b.jsonl"))
    assert alone.returncode == 0, alone.stderr
    assert results(tmp_path)["b.jsonl"] == got["sub/b.wav.jsonl"]


@pytest.mark.slow
def test_a_run_killed_midway_resumes_skipping_what_is_complete_and_redoing_what_was_cut(archive, local_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(archive, tmp_path / "in")
    (tmp_path / "in" / "broken.wav").unlink()
    command = [sys.executable, "-m", "streamer", "analyze", str(tmp_path / "in"), "--out", str(out), "--jobs", "1",
               "--language", "en"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "a.wav.jsonl").is_file() and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "a.wav.jsonl").is_file() and not (out / "sub" / "b.wav.jsonl").is_file()
    (out / "c.wav.jsonl.part").write_text('{"cut off mid-line', encoding="utf-8")  # as a crash mid-write leaves it
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 complete from an earlier run, 2 to analyse" in done.stderr
    assert not list(out.rglob("*.part"))
    expected = {k: v for k, v in results(local_run[0]).items()}
    assert results(out) == expected
    summary = json.loads((out / "summary.json").read_text())
    assert [f["skipped"] for f in summary["files"]] == [True, False, False]  # a.wav, c.wav, sub/b.wav
    again = subprocess.run(command + ["--overwrite"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 complete from an earlier run, 3 to analyse" in again.stderr


@pytest.mark.slow
def test_the_ray_path_on_a_local_instance_gives_the_local_results(archive, local_run, tmp_path):
    pytest.importorskip("ray")
    ray = [str(Path(sys.executable).with_name("ray"))]
    if not Path(ray[0]).exists():
        ray = [sys.executable, "-m", "ray.scripts.scripts"]
    port = str(6390 + os.getpid() % 100)
    # A loopback test instance: Ray's token authentication is for shared clusters.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([*ray, "start", "--head", "--port", port, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
                    "--include-dashboard", "false", "--disable-usage-stats"], env=env, check=True, capture_output=True,
                   timeout=120, cwd=tmp_path)
    try:
        out = tmp_path / "out"
        done = analyze(str(archive), "--out", str(out), "--ray", f"127.0.0.1:{port}", env=env)
        assert done.returncode == 1, done.stderr  # the broken file fails there too
        assert results(out) == results(local_run[0])
        local = json.loads((local_run[0] / "summary.json").read_text())
        remote = json.loads((out / "summary.json").read_text())
        assert [(f["input"], f["utterances"], f["error"]) for f in remote["files"]] == \
               [(f["input"], f["utterances"], f["error"]) for f in local["files"]]
    finally:
        subprocess.run([*ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
