"""The model contract (core/models.py, trainer/fitting.py), checked the same way for every model kind.

Each kind's fitter fits a tiny model on the same small set (synthetic voiced audio with a label-
dependent style, fixture sentences); then, for every kind alike: probabilities of the right shape
whose rows sum to 1; save -> load through MODEL_KINDS gives the same probabilities; and every model
that reads text gives the same answer for decomposed (NFD) and composed (NFC) Hangul. Last, a bundle
of every kind is loaded and used in a fresh interpreter, which must not import a training loop.
"""
from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from core.bundle import load_bundle, save_bundle
from core.labels import LABELS
from core.models import MODEL_KINDS, Sample, model_class
from testsupport.synthetic_audio import synthetic_clip
from testsupport.tiny_models import tiny_bert, tiny_wav2vec2
from trainer.fitting import MODELS

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
torch.set_num_threads(2)

BASE_KINDS = sorted(set(MODEL_KINDS) - {"stacker"})
TEXT_KINDS = {"e5_head", "text_hf", "seed_multimodal", "fusion"}
ROLE = {"e5_head": "text", "text_hf": "text", "resnet_mel": "audio", "resnet_mfcc": "audio", "wav2vec2": "audio",
        "whisper_head": "audio", "seed_multimodal": "multimodal", "fusion": "multimodal"}
# Modules that only fitting needs: none may be imported by loading and using a bundle.
TRAINING_MODULES = ("accelerate", "transformers.trainer", "transformers.training_args", "trainer")


def labelled_set(per_label: int, seed: int) -> tuple[list[Sample], list[str]]:
    from trainer.fixture import sentence

    rng = np.random.default_rng(seed)
    labels = [label for label in LABELS for _ in range(per_label)]
    rng.shuffle(labels)
    samples = [Sample(text=sentence(label, rng), audio=synthetic_clip(label, rng), id=f"c{seed}-{i}")
               for i, label in enumerate(labels)]
    return samples, labels


@pytest.fixture(scope="module")
def data():
    return {"train": labelled_set(8, 0), "val": labelled_set(3, 1), "test": labelled_set(2, 2)}


@pytest.fixture(scope="module")
def fitters(tmp_path_factory, data):
    """kind -> a fitter sized to fit in seconds; the same fitters `trainer train` builds, made small."""
    from core.multimodal import FitSettings
    from trainer.config import ResNetTrainConfig, Wav2Vec2TrainConfig
    from trainer.fit_e5_head import E5HeadFitter
    from trainer.fit_multimodal import MultimodalFitter
    from trainer.fit_resnet import ResNetFitter
    from trainer.fit_text_hf import TextHFFitter
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter
    from trainer.fit_whisper_head import WhisperHeadFitter

    texts = [s.text for s in data["train"][0]]
    bert = tiny_bert(tmp_path_factory.mktemp("bert"), texts, normalize=False)
    wav2vec2 = tiny_wav2vec2(tmp_path_factory.mktemp("wav2vec2"))
    resnet = ResNetTrainConfig(width=4, blocks=[1], crop_s=1.0, max_epochs=2, batch_size=16)
    return {
        "e5_head": E5HeadFitter(),
        "text_hf": TextHFFitter(str(bert), epochs=2, learning_rate=3e-3, max_length=32, device="cpu"),
        "resnet_mel": ResNetFitter("resnet_mel", resnet, device="cpu"),
        "resnet_mfcc": ResNetFitter("resnet_mfcc", resnet, device="cpu"),
        "wav2vec2": Wav2Vec2Fitter(Wav2Vec2TrainConfig(checkpoint=str(wav2vec2), crop_s=1.0, batch_size=16, grad_accum=1,
                                                       warmup_ratio=0.0, max_epochs=1, freeze_feature_encoder=False),
                                   device="cpu"),
        "whisper_head": WhisperHeadFitter(device="cpu"),
        "seed_multimodal": MultimodalFitter("seed_multimodal", fit=FitSettings(epochs=2, patience=0), device="cpu"),
        "fusion": MultimodalFitter("fusion", fit=FitSettings(epochs=3, patience=0), device="cpu"),
    }


_fitted: dict[str, object] = {}


def fitted(kind: str, fitters, data):
    if kind not in _fitted:
        fitter = fitters[kind]
        assert fitter.kind == kind and fitter.unavailable_reason() is None
        _fitted[kind] = fitter.fit(*data["train"], eval_set=data["val"])
    return _fitted[kind]


def test_every_kind_has_a_fitter_here_and_in_train(fitters):
    assert sorted(fitters) == BASE_KINDS
    assert {spec.kind for spec in MODELS.values()} == set(BASE_KINDS)
    assert all(ROLE[spec.kind] == spec.role for spec in MODELS.values())


@pytest.mark.parametrize("kind", BASE_KINDS)
def test_fit_predict_save_load(kind, fitters, data, tmp_path):
    model = fitted(kind, fitters, data)
    assert type(model) is model_class(kind) and model.kind == kind and tuple(model.labels) == LABELS
    test = data["test"][0]
    probs = model.predict_proba(test)
    assert probs.shape == (len(test), len(LABELS)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict_proba([]).shape == (0, len(LABELS))
    settings = model.save(tmp_path)
    assert isinstance(settings, dict) and json.dumps(settings)  # recorded in bundle.json
    loaded = model_class(kind).load(tmp_path, device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(test), probs, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(TEXT_KINDS))
def test_text_models_read_decomposed_hangul_as_composed(kind, fitters, data):
    model = fitted(kind, fitters, data)
    test = data["test"][0]
    decomposed = [Sample(text=unicodedata.normalize("NFD", s.text) + "  ", audio=s.audio, id=s.id) for s in test]
    assert decomposed[0].text != test[0].text
    np.testing.assert_allclose(model.predict_proba(decomposed), model.predict_proba(test), atol=1e-6)


def test_the_stacker_combines_and_round_trips(tmp_path):
    from core.stacker import Stacker
    from trainer.stacking import fit_stacker

    rng = np.random.default_rng(0)
    y = np.array([i % len(LABELS) for i in range(80)])
    oof = {role: np.eye(len(LABELS))[y] * 0.6 + rng.dirichlet(np.ones(len(LABELS)), size=len(y)) * 0.4
           for role in ("text", "audio")}
    stacker = fit_stacker(oof, y)
    combined = stacker.predict_proba_from(oof)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, atol=1e-9)
    stacker.save(tmp_path)
    np.testing.assert_allclose(Stacker.load(tmp_path).predict_proba_from(oof), combined, atol=1e-12)


def modules_after_predicting(folders: list[str], sample: Sample, tmp_path: Path) -> list[str]:
    """sys.modules of a fresh interpreter that loaded each bundle and predicted one sample with it."""
    np.save(tmp_path / "audio.npy", sample.audio)
    script = f"""
import json, sys
import numpy as np
from core.bundle import load_bundle
from core.models import Sample
sample = Sample(text={sample.text!r}, audio=np.load({str(tmp_path / 'audio.npy')!r}), id="x")
for folder in {folders!r}:
    prediction = load_bundle(folder, device="cpu").predict([sample])[0]
    assert prediction.used, folder
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == t or m.startswith(t + ".") for t in names)]


def test_bundles_of_every_kind_load_and_predict_without_a_training_loop(fitters, data, tmp_path):
    """No fitting code, no transformers Trainer, no accelerate: except that transformers itself
    imports accelerate's device-dispatch module whenever accelerate is installed, so the two kinds
    built on transformers models (text_hf, wav2vec2) bring accelerate in through transformers, never
    through this project's code."""
    from core.stacker import Stacker

    folders = {kind: str(save_bundle(tmp_path / kind, {ROLE[kind]: fitted(kind, fitters, data)})) for kind in BASE_KINDS}
    stacked = save_bundle(tmp_path / "stacked", {"text": fitted("e5_head", fitters, data),
                                                 "audio": fitted("resnet_mel", fitters, data)},
                          Stacker.pass_through("text", "contract test"))
    assert load_bundle(stacked).loaded() == {"text": "e5_head", "audio": "resnet_mel", "multimodal": None,
                                             "stacker": "stacker"}
    sample = data["test"][0][0]
    transformers_kinds = {"text_hf", "wav2vec2"}
    plain = [folders[k] for k in BASE_KINDS if k not in transformers_kinds] + [str(stacked)]
    modules = modules_after_predicting(plain, sample, tmp_path)
    assert not imported(modules, TRAINING_MODULES), imported(modules, TRAINING_MODULES)
    modules = modules_after_predicting(list(folders.values()) + [str(stacked)], sample, tmp_path)
    assert not imported(modules, ("trainer", "transformers.trainer", "transformers.training_args")), \
        imported(modules, ("trainer", "transformers.trainer", "transformers.training_args"))
    assert "transformers.integrations.accelerate" in modules or not imported(modules, ("accelerate",))
