"""Metrics against hand-worked examples, calibration that does what it claims, and the report files."""
import json

import numpy as np
import pytest

from core.labels import LABELS
from trainer.evaluate import (
    SEED_RESULTS,
    apply_temperature,
    calibrate,
    classification_metrics,
    evaluate_model,
    expected_calibration_error,
    write_reports,
)


def one_hot(indices, confidence=1.0):
    proba = np.full((len(indices), 4), (1 - confidence) / 3)
    proba[np.arange(len(indices)), indices] = confidence
    return proba


def test_metrics_match_a_worked_example():
    y = ["angry", "angry", "happiness", "neutral", "sadness", "sadness"]
    pred = [0, 1, 1, 2, 3, 0]  # angry: 1 of 2 right and 1 false alarm; sadness: 1 of 2
    m = classification_metrics(y, one_hot(pred, 0.7))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["angry"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["happiness"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["sadness"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1.0 + 2 / 3) / 4)
    assert m["weighted_f1"] == pytest.approx((2 * 0.5 + 1 * 2 / 3 + 1 * 1.0 + 2 * 2 / 3) / 6)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]


def test_the_seeds_f1_is_weighted_f1_of_a_one_class_model():
    # 3679 of 10000 test rows in one class, the model always says that class: the seed's 0.3679 / 0.1979
    y = np.array([2] * 3679 + [0] * 2500 + [1] * 2000 + [3] * 1821)
    m = classification_metrics(y, one_hot(np.full(len(y), 2), 0.9))
    assert m["accuracy"] == pytest.approx(0.3679)
    assert m["weighted_f1"] == pytest.approx(0.1979, abs=1e-4)
    assert m["macro_f1"] == pytest.approx(0.1345, abs=1e-3)


def test_ece_is_the_confidence_accuracy_gap():
    y = np.array([0, 1, 2, 3] * 25)
    assert expected_calibration_error(y, one_hot(y)) == pytest.approx(0.0)
    half_wrong = y.copy()
    half_wrong[::2] = (y[::2] + 1) % 4
    assert expected_calibration_error(y, one_hot(half_wrong)) == pytest.approx(0.5)


def test_temperature_undoes_overconfidence_and_keeps_labels():
    rng = np.random.default_rng(0)
    n = 2000
    logits = rng.normal(0, 1, (n, 4)) + 1.5 * np.eye(4)[rng.integers(0, 4, n)]
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in calibrated])  # labels drawn from the calibrated probabilities
    sharp = apply_temperature(calibrated, 1 / 3)  # three times too confident
    result = calibrate([LABELS[i] for i in y], sharp)
    assert result.applied and result.temperature == pytest.approx(3.0, rel=0.15)
    assert result.val_ece_after < result.val_ece_before / 2
    assert (apply_temperature(sharp, result.temperature).argmax(axis=1) == sharp.argmax(axis=1)).all()
    honest = calibrate(y, calibrated)
    assert honest.temperature == pytest.approx(1.0, rel=0.15)
    few = calibrate(y[:60], sharp[:60])  # too few to trust, however much ECE drops
    assert not few.applied and "only 60 validation utterances" in few.reason and few.used_temperature == 1.0


def test_reports_hold_every_model_beside_the_seed(tmp_path):
    rng = np.random.default_rng(1)
    y_val, y_test = rng.integers(0, 4, 80), rng.integers(0, 4, 80)

    def noisy(y, strength):
        logits = rng.normal(0, 1, (len(y), 4)) + strength * np.eye(4)[y]
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    probabilities = {"e5_head": {"val": noisy(y_val, 2), "test": noisy(y_test, 2)},
                     "resnet_mel": {"val": noisy(y_val, 0.5), "test": noisy(y_test, 0.5)}}
    reports = [evaluate_model("e5_head", "text", "e5_head", y_val, probabilities["e5_head"]["val"], y_test, probabilities["e5_head"]["test"]),
               evaluate_model("resnet_mel", "audio", "resnet_mel", y_val, probabilities["resnet_mel"]["val"], y_test, probabilities["resnet_mel"]["test"])]
    decision = {"mode": "base", "summary": "pass through text (CV macro-F1 0.5 <= 0.6)", "cv": {"stack_macro_f1": 0.5}}
    metrics = write_reports(tmp_path, reports, probabilities, y_val, y_test, decision, {"text_hf": "klue/roberta-base is not reachable"})

    summary = (tmp_path / "summary.md").read_text()
    for expected in ("| e5_head | text |", "| resnet_mel | audio |", "0.70 / 0.69", "0.37 / 0.24", "0.61 / 0.60",
                     "(not trained) | multimodal", "pass through text", "out-of-fold", "klue/roberta-base is not reachable"):
        assert expected in summary
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["models"]["e5_head"]["test"]["accuracy"] == pytest.approx(reports[0].test["accuracy"])
    assert saved["seed"] == SEED_RESULTS and saved["stacking"]["mode"] == "base"
    for name in ("e5_head", "resnet_mel"):
        for plot in ("confusion", "reliability"):
            png = tmp_path / "plots" / f"{name}_{plot}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
