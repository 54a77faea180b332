"""The stacker: never worse than its best base model, NaN-aware, and saved without pickle."""
import json

import numpy as np
import pytest

from core.errors import UserError
from core.labels import LABELS
from core.stacker import Stacker, features
from trainer.evaluate import classification_metrics
from trainer.stacking import fit_stacker, validate

pytestmark = pytest.mark.slow  # hundreds of small cross-validated fits


def specialist(y, rng, good: set[int], strength=2.5, noise=1.0):
    """Probabilities that know the classes in `good` well and guess on the others."""
    logits = rng.normal(0, noise, (len(y), 4))
    for i, label in enumerate(y):
        if label in good:
            logits[i, label] += strength
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def split(n, seed):
    rng = np.random.default_rng(seed)
    return rng, rng.integers(0, 4, n)


def test_complementary_models_are_stacked_and_beat_both_on_validation():
    rng, y = split(600, 0)
    oof = {"text": specialist(y, rng, {0, 1}), "audio": specialist(y, rng, {2, 3})}
    stacker = fit_stacker(oof, y)
    assert stacker.mode == "stack" and stacker.decision["cv"]["stack_macro_f1"] > max(stacker.decision["cv"]["base_macro_f1"].values())

    rng, y_val = split(300, 1)
    val = {"text": specialist(y_val, rng, {0, 1}), "audio": specialist(y_val, rng, {2, 3})}
    record = validate(stacker, val, y_val)
    assert "fallback" not in record and stacker.mode == "stack"
    stacked = classification_metrics(y_val, stacker.predict_proba_from(val))["macro_f1"]
    assert stacked >= max(classification_metrics(y_val, p)["macro_f1"] for p in val.values())

    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=stacker.C, max_iter=2000).fit(features(oof, stacker.roles), y)
    np.testing.assert_allclose(stacker.predict_proba_from(val), reference.predict_proba(features(val, stacker.roles)), atol=1e-6)


def test_a_stack_that_does_not_help_passes_the_best_model_through():
    rng, y = split(400, 2)
    oof = {"text": specialist(y, rng, {0, 1, 2, 3}, strength=3.0), "audio": rng.dirichlet(np.ones(4), len(y))}
    stacker = fit_stacker(oof, y)
    if stacker.mode == "stack":  # CV may find the noise harmless; then validation must still agree
        validate(stacker, oof, y)
    rng, y_val = split(200, 3)
    val = {"text": specialist(y_val, rng, {0, 1, 2, 3}, strength=3.0), "audio": rng.dirichlet(np.ones(4), len(y_val))}
    validate(stacker, val, y_val)
    out = stacker.predict_proba_from(val)
    assert classification_metrics(y_val, out)["macro_f1"] >= classification_metrics(y_val, val["text"])["macro_f1"]
    if stacker.mode == "base":
        assert stacker.base_role == "text" and "pass through text" in stacker.decision["summary"]
        np.testing.assert_allclose(out, val["text"])


def test_validation_overrules_cross_validation_and_says_so():
    rng, y = split(600, 4)
    stacker = fit_stacker({"text": specialist(y, rng, {0, 1}), "audio": specialist(y, rng, {2, 3})}, y)
    assert stacker.mode == "stack"
    rng, y_val = split(300, 5)  # on validation, text has become good at everything and audio is noise
    val = {"text": specialist(y_val, rng, {0, 1, 2, 3}, strength=4.0), "audio": rng.dirichlet(np.ones(4), len(y_val))}
    record = validate(stacker, val, y_val)
    assert stacker.mode == "base" and stacker.base_role == "text" and "fallback" in record
    assert "validation macro-F1 beat the stacker" in stacker.decision["summary"]
    np.testing.assert_allclose(stacker.predict_proba_from(val), val["text"])


def test_missing_inputs_give_nan_rows_so_the_bundle_falls_back():
    rng, y = split(300, 6)
    oof = {"text": specialist(y, rng, {0, 1}), "audio": specialist(y, rng, {2, 3})}
    stacker = fit_stacker(oof, y)
    part = {role: p[:5].copy() for role, p in oof.items()}
    part["audio"][[1, 3]] = np.nan
    out = stacker.predict_proba_from(part)
    assert np.isnan(out[[1, 3]]).all() and not np.isnan(out[[0, 2, 4]]).any()
    np.testing.assert_allclose(out[[0, 2, 4]].sum(axis=1), 1.0)
    assert np.isnan(stacker.predict_proba_from({"text": part["text"]})).all()  # a role it needs is absent


def test_save_load_round_trip_and_damaged_files(tmp_path):
    rng, y = split(300, 7)
    oof = {"text": specialist(y, rng, {0, 1}), "audio": specialist(y, rng, {2, 3})}
    stacker = fit_stacker(oof, y)
    stacker.temperature = 1.7
    settings = stacker.save(tmp_path)
    assert settings["roles"] == ["audio", "text"] and settings["temperature"] == 1.7
    loaded = Stacker.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba_from(oof), stacker.predict_proba_from(oof))
    assert loaded.decision == json.loads(json.dumps(stacker.decision))

    data = json.loads((tmp_path / "stacker.json").read_text())
    data["coef"] = data["coef"][:2]
    (tmp_path / "stacker.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="inconsistent stacker"):
        Stacker.load(tmp_path)
    data["labels"] = list(reversed(LABELS))
    (tmp_path / "stacker.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="labels"):
        Stacker.load(tmp_path)
    (tmp_path / "stacker.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        Stacker.load(tmp_path)


def test_incomplete_out_of_fold_table_is_refused():
    rng, y = split(100, 8)
    oof = {"text": specialist(y, rng, {0, 1})}
    oof["text"][4] = np.nan
    with pytest.raises(ValueError, match="complete"):
        fit_stacker(oof, y)
