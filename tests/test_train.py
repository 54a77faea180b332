"""`trainer train` end to end on the fixture: interrupted and resumed, reports, a bundle that reproduces the run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.audio import decode as load_audio
from core.bundle import BundleError, Sample, load_bundle
from core.labels import LABELS
from core.stacker import Stacker
from trainer.__main__ import main
from trainer.config import load_config
from trainer.fitting import MODELS
from trainer.manifest import read_manifest, read_splits
from trainer.train import _select, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
MODELS_UNDER_TEST = ["e5_head", "text_hf", "seed_multimodal", "fusion"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from test_text_hf import tiny_bert

    root = tmp_path_factory.mktemp("train")
    assert main(["make-fixture", "--out", str(root / "aihub"), "--rows-per-label", "40"]) == 0
    assert main(["prepare", "--aihub", str(root / "aihub"), "--out", str(root / "prep"), "--workers", "1", "--folds", "3"]) == 0
    tiny = tiny_bert(root / "tiny-bert", [r.text for r in read_manifest(root / "prep")])
    config = root / "config.toml"
    config.write_text(
        "[train]\n"
        f"models = {json.dumps(MODELS_UNDER_TEST)}\n"
        'device = "cpu"\n'
        "[train.text_hf]\n"
        f'model = "{tiny}"\n'
        "learning_rate = 3e-3\nepochs = 6\npatience = 3\nmax_length = 64\n"
        "[train.fusion]\nepochs = 40\n"
    )
    return root


def train_command(root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--config", str(root / "config.toml"),
            "--manifest", str(root / "prep"), "--out", str(out)]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


@pytest.mark.slow
def test_interrupted_run_resumes_and_writes_reports_and_a_faithful_bundle(prepared, tmp_path):
    out = tmp_path / "run"
    first_marker = out / "work" / "e5_head" / "full" / "done.json"

    # 1. interrupt the run (Ctrl-C) while its second model fine-tunes: by then the first is
    # finished, and fine-tuning takes seconds, so the signal cannot miss the run on a fast machine
    log = tmp_path / "first.log"
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(
            train_command(prepared, out), cwd=ROOT, env=environment(), stdout=sink, stderr=subprocess.STDOUT,
            # a CI runner started in the background ignores SIGINT, and children inherit that: restore
            # Ctrl-C's default so the run sees the interrupt as a person's Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.time() + 300
    while "text_hf: training on" not in log.read_text() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first_marker.exists(), "the first model never finished"
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 130 and "interrupted" in output, output
    assert not (out / "bundle").exists()
    marker = first_marker.read_text()

    # 2. the same command again: the finished part is read back, the rest is done
    second = subprocess.run(train_command(prepared, out), cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "e5_head: done earlier" in second.stdout and "e5_head: training" not in second.stdout
    assert first_marker.read_text() == marker
    assert "text_hf: training on" in second.stdout

    # 3. once more: nothing is trained again
    third = subprocess.run(train_command(prepared, out), cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "training on" not in third.stdout and third.stdout.count("done earlier") >= len(MODELS_UNDER_TEST)

    metrics = json.loads((out / "metrics.json").read_text())
    models = metrics["models"]
    assert set(models) == {*MODELS_UNDER_TEST, "stack"}
    for name, report in models.items():
        assert report["test"]["accuracy"] > 0.4, (name, report["test"])  # every model above chance (0.25)
    best_base = max(models[name]["val"]["macro_f1"] for name in MODELS_UNDER_TEST)
    assert models["stack"]["val"]["macro_f1"] >= best_base - 1e-9
    summary = (out / "summary.md").read_text()
    assert "0.70 / 0.69" in summary and "out-of-fold" in summary and metrics["stacking"]["summary"] in summary
    for name in models:
        assert (out / "plots" / f"{name}_confusion.png").stat().st_size > 5000

    # the bundle reproduces the run: base models' test probabilities through the saved stacker
    bundle = load_bundle(out / "bundle")
    chosen = metrics["chosen"]
    assert {role: bundle.models[role].kind for role in bundle.models} == {role: MODELS[n].kind for role, n in chosen.items()}
    records = {r.wav_id: r for r in read_manifest(prepared / "prep")}
    test_ids = read_splits(prepared / "prep").test
    samples = [Sample(text=records[i].text, audio=load_audio(records[i].audio), id=i) for i in test_ids]
    per_role = {role: np.load(out / "work" / name / "full" / "test.npy") for role, name in chosen.items()}
    expected = Stacker.load(out / "bundle" / "stacker").predict_proba_from(per_role)
    got = np.array([[p.probs[label] for label in LABELS] for p in bundle.predict(samples)])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # a damaged bundle is refused
    stacker_file = out / "bundle" / "stacker" / "stacker.json"
    stacker_file.write_text(stacker_file.read_text().replace('"mode"', '"mod"', 1))
    with pytest.raises(BundleError, match="stacker.json"):
        load_bundle(out / "bundle")


@pytest.mark.slow
def test_bad_requests_are_one_clear_line(prepared, tmp_path, capsys):
    base = ["train", "--config", str(prepared / "config.toml"), "--manifest", str(prepared / "prep"), "--out", str(tmp_path / "o")]
    assert main([*base, "--models", "e5_head,nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[train.text_hf]\nmodel = "no-such-owner-e2/no-such-model"\n')
    assert main(["train", "--config", str(bad), "--manifest", str(prepared / "prep"), "--out", str(tmp_path / "o"),
                 "--models", "text_hf"]) == 2
    assert "cannot train text_hf" in capsys.readouterr().err
    assert main(["train", "--manifest", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--models", "e5_head"]) == 2
    assert "manifest.jsonl not found" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "o")]) == 2
    assert "--manifest" in capsys.readouterr().err


def test_all_means_every_model_and_skips_the_ones_without_weights(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train.text_hf]\nmodel = "no-such-owner-e2/no-such-model"\n')
    cfg = load_config(bad).train
    assert _select(cfg) == (list(MODELS), True)
    assert unavailable_reason("text_hf") is None  # its kind is installed ...
    reason = MODELS["text_hf"].build(cfg, tmp_path).unavailable_reason()  # ... but its weights are not here
    assert "no-such-owner-e2/no-such-model" in reason and "set its folder in the config" in reason
    assert MODELS["fusion"].build(cfg, tmp_path).unavailable_reason() is None


def test_a_part_keeps_checkpoints_only_from_an_attempt_with_the_same_settings(tmp_path):
    from trainer.train import Run

    run = Run(tmp_path, "data", main_process=True, barrier=lambda: None)
    part = run.part("text_hf", "full")
    run.start(part, "settings-a")
    (part / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (part / "model.part").mkdir()
    run.start(part, "settings-a")  # interrupted, same settings: resume from the checkpoint
    assert (part / "checkpoints" / "checkpoint-8").is_dir() and not (part / "model.part").exists()
    run.start(part, "settings-b")  # settings changed: the old checkpoint must not be resumed
    assert not (part / "checkpoints").exists()
    assert not run.is_done(part, "settings-b")
    run.finish(part, "settings-b", {"val": [[0.25] * 4]})
    assert run.is_done(part, "settings-b") and not run.is_done(part, "settings-a")
