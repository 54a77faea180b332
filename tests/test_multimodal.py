"""Multimodal models on the fixture: they learn, they round-trip through a bundle, they refuse bad input."""
import json

import numpy as np
import pytest
from conftest import split_samples

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from core.bundle import BundleError, Sample, load_bundle, save_bundle  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.labels import LABELS  # noqa: E402
from core.multimodal import (  # noqa: E402
    FitSettings,
    GatedFusionModel,
    SeedMultimodal,
    mel_statistics,
    seed_mel_means,
)
from trainer.evaluate import classification_metrics  # noqa: E402
from trainer.fit_multimodal import MultimodalFitter  # noqa: E402

pytestmark = pytest.mark.slow  # fits both models and compares against librosa


@pytest.fixture(scope="module")
def data(prepared_fixture):
    return {**split_samples(prepared_fixture, audio=True)}


@pytest.fixture(scope="module")
def fitted(data):
    seed = MultimodalFitter("seed_multimodal", device="cpu").fit(*data["train"])
    fusion = MultimodalFitter("fusion", fit=FitSettings(epochs=40, patience=8), device="cpu").fit(*data["train"], eval_set=data["val"])
    return {"seed_multimodal": seed, "fusion": fusion}


def test_seed_features_are_librosas(data):
    import librosa

    samples = data["test"][0][:3]
    for sample, row in zip(samples, seed_mel_means(samples, device="cpu")):
        mel = librosa.feature.melspectrogram(y=sample.audio, sr=16000, n_mels=13)  # the seed's call, librosa's defaults
        np.testing.assert_allclose(row, librosa.power_to_db(mel, ref=np.max).mean(axis=1), atol=0.05)
    stats = mel_statistics(samples, device="cpu")
    assert stats.shape == (3, 3 * 64 + 1) and np.isfinite(stats).all()
    assert stats[:, -1] == pytest.approx(np.log([len(s.audio) / 16000 for s in samples]))


@pytest.mark.parametrize("name", ["seed_multimodal", "fusion"])
def test_learns_above_chance(fitted, data, name):
    metrics = classification_metrics(data["test"][1], fitted[name].predict_proba(data["test"][0]))
    assert metrics["accuracy"] > 0.45 and metrics["macro_f1"] > 0.4, metrics  # chance is 0.25


def test_fusion_keeps_its_best_validation_epoch(fitted, data):
    history = fitted["fusion"].history
    scores = [h["val_macro_f1"] for h in history]
    kept = classification_metrics(data["val"][1], fitted["fusion"].predict_proba(data["val"][0]))["macro_f1"]
    assert kept == pytest.approx(max(scores))
    assert len(history) == 40 or scores.index(max(scores)) == len(history) - 1 - 8  # stopped after 8 stale epochs
    assert all("val_macro_f1" not in h for h in fitted["seed_multimodal"].history)  # the seed's recipe: 10 epochs flat
    assert len(fitted["seed_multimodal"].history) == 10


def test_bundle_round_trip_predicts_the_same(fitted, data, tmp_path):
    samples = data["test"][0]
    folder = save_bundle(tmp_path / "bundle", {"multimodal": fitted["fusion"]})
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    predictions = load_bundle(folder).predict(samples)
    got = np.array([[p.probs[label] for label in LABELS] for p in predictions])
    np.testing.assert_allclose(got, fitted["fusion"].predict_proba(samples), atol=1e-6)
    assert predictions[0].used == ["multimodal"] and predictions[0].multimodal is not None
    # a sample without audio cannot feed a multimodal model: the bundle says so instead of guessing
    (alone,) = load_bundle(folder).predict([Sample(text=samples[0].text)])
    assert alone.multimodal is None and alone.used == []

    seed_folder = tmp_path / "seed"
    seed_folder.mkdir()
    fitted["seed_multimodal"].save(seed_folder)
    np.testing.assert_allclose(SeedMultimodal.load(seed_folder).predict_proba(samples[:5]),
                               fitted["seed_multimodal"].predict_proba(samples[:5]), atol=1e-6)


def test_damaged_models_are_refused(fitted, tmp_path):
    folder = save_bundle(tmp_path / "bundle", {"multimodal": fitted["fusion"]})
    weights = folder / "multimodal" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BundleError, match="model.safetensors has"):
        load_bundle(folder)

    plain = tmp_path / "plain"
    plain.mkdir()
    fitted["fusion"].save(plain)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "kind": "seed_multimodal"}))
    with pytest.raises(UserError, match="not 'fusion'"):
        GatedFusionModel.load(plain)
    (plain / "config.json").write_text(json.dumps(config))
    (plain / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="unreadable"):
        GatedFusionModel.load(plain)


def test_missing_modalities_are_named(fitted, data):
    sample = data["test"][0][0]
    with pytest.raises(ValueError, match="need audio.*x1"):
        fitted["fusion"].predict_proba([Sample(text=sample.text, id="x1")])
    with pytest.raises(ValueError, match="needs text.*x2"):
        fitted["fusion"].predict_proba([Sample(text="  ", audio=sample.audio, id="x2")])


def test_a_hugging_face_encoder_can_supply_the_text_vectors(data, tmp_path):
    from test_text_hf import tiny_bert

    from core.multimodal import text_vectors

    encoder = str(tiny_bert(tmp_path / "tiny-bert", [s.text for s in data["train"][0]]))
    samples = data["test"][0][:6]
    vectors = text_vectors(samples, encoder, device="cpu")
    assert vectors.shape == (6, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text_vectors(samples[::-1], encoder, device="cpu"), vectors[::-1], atol=1e-6)
    model = MultimodalFitter("fusion", encoder, FitSettings(epochs=3, patience=0), device="cpu").fit(*data["train"])
    folder = tmp_path / "fusion"
    folder.mkdir()
    model.save(folder)
    loaded = GatedFusionModel.load(folder)
    assert loaded.text_encoder == encoder and loaded.text_dim == 64
    np.testing.assert_allclose(loaded.predict_proba(samples), model.predict_proba(samples), atol=1e-6)
