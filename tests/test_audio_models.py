"""Audio models learn a class-dependent synthetic set, and a bundle round trip keeps their answers.

The synthetic set (tests/synthetic_audio.py: 4 labels x 24 clips of 1-2 s, label-dependent
pitch, syllable rate and loudness contour, random gain) is learnable but not trivial; chance
macro-F1 is about 0.25. Sizes are tiny so the whole file runs in a few minutes on two shared cores.
"""
import numpy as np
import pytest
import torch

from core.audio_resnet import ResNetMel, ResNetMfcc
from core.audio_windows import random_crop, windows
from core.bundle import load_bundle, save_bundle
from core.errors import UserError
from core.labels import LABELS
from core.models import Sample
from testsupport.synthetic_audio import synthetic_clip, synthetic_set
from trainer.augment import add_noise, pitch_shift, time_stretch
from trainer.config import ResNetTrainConfig, Wav2Vec2TrainConfig
from trainer.fit_resnet import ResNetFitter
from trainer.network_training import class_weights, split_validation

torch.set_num_threads(2)
SR = 16_000


@pytest.fixture(scope="module")
def data():
    train, y_train = synthetic_set(24, seed=0)
    test, y_test = synthetic_set(8, seed=1)
    return train, y_train, test, y_test


def macro_f1(labels, y_true, probs) -> float:
    from sklearn.metrics import f1_score

    return f1_score(y_true, [labels[i] for i in probs.argmax(axis=1)], average="macro")


def check_probs(probs: np.ndarray, n: int) -> None:
    assert probs.shape == (n, len(LABELS))
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def round_trip(model, samples, tmp_path, device="cpu"):
    """Save into a bundle, load it back through MODEL_KINDS, return the loaded model."""
    save_bundle(tmp_path / "bundle", {"audio": model})
    bundle = load_bundle(tmp_path / "bundle", device=device)
    assert bundle.loaded()["audio"] == model.kind
    return bundle.models["audio"]


# --- windows, augmentation, training helpers --------------------------------------------------


def test_windows_cover_a_long_clip_and_pad_a_short_one():
    wave = np.arange(23_000, dtype=np.float32)
    parts, lengths = windows(wave, 10_000)
    assert [p[0] for p in parts] == [0, 5_000, 10_000, 13_000]  # half overlap, the last flush with the end
    assert parts[-1][-1] == 22_999 and lengths == [10_000] * 4
    short, length = windows(wave[:3_000], 10_000)
    assert len(short) == 1 and length == [3_000] and short[0].shape == (10_000,) and short[0][3_000:].max() == 0


def test_random_crop_keeps_real_audio_inside_the_window():
    rng = np.random.default_rng(0)
    wave = np.ones(3_000, dtype=np.float32)
    for _ in range(20):
        crop, length = random_crop(wave, 8_000, rng)
        assert crop.shape == (8_000,) and crop.sum() == 3_000 and crop[length:].sum() == 0 and length >= 3_000
    crop, length = random_crop(np.arange(20_000, dtype=np.float32), 8_000, rng)
    assert length == 8_000 and np.all(np.diff(crop) == 1)  # one contiguous piece


@pytest.mark.slow
def test_augmentations_do_what_their_names_say():
    rng = np.random.default_rng(0)
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    noisy = add_noise(tone, rng, level=0.05)
    assert 0 < np.std(noisy - tone) <= 0.05 * 0.5
    assert abs(len(time_stretch(tone, 0.8)) - SR / 0.8) < 0.02 * SR  # slower = longer
    shifted = pitch_shift(tone, 12.0, SR)  # one octave up
    assert len(shifted) == SR
    peak_hz = np.argmax(np.abs(np.fft.rfft(shifted))) * SR / len(shifted)
    assert abs(peak_hz - 400) < 10


def test_validation_split_is_stratified_and_weights_balance_classes():
    y = [0] * 40 + [1] * 20 + [2] * 10 + [3] * 10
    train, val = split_validation(y, 0.25, seed=1)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 80
    assert np.bincount(np.asarray(y)[val]).tolist() == [10, 5, 3, 2] or np.bincount(np.asarray(y)[val]).tolist() == [10, 5, 2, 3]
    w = class_weights(y, 4)
    assert torch.allclose(w * torch.tensor([40.0, 20, 10, 10]), torch.full((4,), 20.0))


@pytest.mark.slow
def test_audio_models_say_which_samples_lack_audio_and_which_labels_are_unknown():
    fitter = ResNetFitter("resnet_mel", ResNetTrainConfig(width=4, blocks=[1], crop_s=0.5, max_epochs=1), device="cpu")
    with pytest.raises(ValueError, match="samples without it: \\['no-audio'\\]"):
        fitter.fit([Sample(audio=synthetic_clip("angry", np.random.default_rng(0))), Sample(text="hi", id="no-audio")], ["angry", "sadness"])
    with pytest.raises(ValueError, match="'joy'"):
        fitter.fit([Sample(audio=synthetic_clip("angry", np.random.default_rng(0)))], ["joy"])


@pytest.mark.slow
def test_a_fit_after_another_accelerate_user_with_other_settings_works(data):
    """`trainer train` fits many models in one process; accelerate's global state must not leak between them."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # whatever an earlier test left
    Accelerator(cpu=True, mixed_precision="bf16")  # as a bf16 model fitted earlier in the process would leave it
    train, y_train, _, _ = data
    fitter = ResNetFitter("resnet_mel", ResNetTrainConfig(width=4, blocks=[1], crop_s=0.5, max_epochs=1), device="cpu")
    model = fitter.fit(train[:16], y_train[:16])
    assert len(model.record["history"]) == 1


# --- the models ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cls,augment", [(ResNetMel, False), (ResNetMfcc, True)])
def test_resnet_learns_and_round_trips(cls, augment, data, tmp_path):
    train, y_train, test, y_test = data
    config = ResNetTrainConfig(width=8, blocks=[1, 1, 1, 1], crop_s=1.5, batch_size=16, lr=3e-3, max_epochs=12,
                               patience=4, augment=augment)
    model = ResNetFitter(cls.kind, config, device="cpu").fit(train, y_train)
    assert type(model) is cls
    assert model.record["history"] and "val_macro_f1" in model.record["history"][0]
    probs = model.predict_proba(test)
    check_probs(probs, len(test))
    assert macro_f1(model.labels, y_test, probs) > 0.6
    loaded = round_trip(model, test, tmp_path)
    assert type(loaded) is cls and loaded.features.kind == model.features.kind
    np.testing.assert_allclose(loaded.predict_proba(test), probs, atol=1e-5)
    # a clip longer than the window is judged on all of its windows, still one row
    long_clip = Sample(audio=np.concatenate([s.audio for s in test[:4]]), id="long")
    check_probs(loaded.predict_proba([long_clip]), 1)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    """A randomly initialised, tiny wav2vec 2.0 saved like a downloaded checkpoint (no network)."""
    from testsupport.tiny_models import tiny_wav2vec2

    return tiny_wav2vec2(tmp_path_factory.mktemp("tiny-wav2vec2"))


@pytest.mark.slow
def test_wav2vec2_fine_tunes_a_local_checkpoint_and_round_trips(tiny_wav2vec2, data, tmp_path):
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter

    train, y_train, test, y_test = data
    model = Wav2Vec2Fitter(Wav2Vec2TrainConfig(
        checkpoint=str(tiny_wav2vec2), crop_s=1.0, batch_size=16, grad_accum=1, lr=2e-3, warmup_ratio=0.0,
        max_epochs=4, patience=4, freeze_feature_encoder=False,
    ), device="cpu").fit(train, y_train)
    history = model.record["history"]
    losses = [h["loss"] for h in history if "loss" in h]
    f1s = [h["eval_macro_f1"] for h in history if "eval_macro_f1" in h]
    assert len(losses) == len(f1s) == 4 and losses[-1] < losses[0] and max(f1s) > f1s[0]
    probs = model.predict_proba(test)
    check_probs(probs, len(test))
    loaded = round_trip(model, test, tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(test), probs, atol=1e-5)


def test_wav2vec2_names_a_checkpoint_it_cannot_load(tmp_path, data):
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter

    train, y_train, _, _ = data
    missing = tmp_path / "no-such-model"
    fitter = Wav2Vec2Fitter(Wav2Vec2TrainConfig(checkpoint=str(missing)), device="cpu")
    assert f"{missing} does not exist" in fitter.unavailable_reason()
    with pytest.raises(UserError, match=f"cannot load the audio checkpoint {missing}.*local folder"):
        fitter.fit(train[:8], y_train[:8])


@pytest.fixture(scope="module")
def whisper():
    from core.asr import load_whisper
    from core.config import AsrConfig

    return load_whisper(AsrConfig(device="cpu"))


@pytest.mark.slow
def test_encoder_output_is_pooled_over_real_audio_only(whisper):
    """CTranslate2's encode returns a (batch, frames, 512) StorageView; padding frames are left out."""
    from core.asr import encoder_input
    from core.audio_whisper import pool_encoder_output, whisper_embeddings

    model = whisper.model
    clips = [synthetic_clip("angry", np.random.default_rng(1), 1.0), synthetic_clip("sadness", np.random.default_rng(2), 2.5)]
    output = model.encode(np.stack([encoder_input(whisper, c, 4.0) for c in clips]))  # one 4 s window
    states = np.array(output)
    assert states.shape == (2, 200, 512)
    pooled = pool_encoder_output(output, [100, 250])  # feature frames of 1 s and 2.5 s
    np.testing.assert_allclose(pooled[0], states[0, :50].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(pooled[1], states[1, :125].mean(axis=0), rtol=1e-5)
    assert not np.allclose(pooled[0], states[0].mean(axis=0), rtol=1e-2)  # the padding would have changed it
    # a clip embedded in a batch with another of its window size gets its own embedding
    same_window = [clips[1], synthetic_clip("happiness", np.random.default_rng(3), 2.7)]
    np.testing.assert_allclose(whisper_embeddings(whisper, same_window)[0], whisper_embeddings(whisper, same_window[:1])[0],
                               rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_whisper_head_learns_on_real_whisper_and_round_trips(whisper, data, tmp_path):
    from trainer.fit_whisper_head import WhisperHeadFitter

    train, y_train, test, y_test = data
    head = WhisperHeadFitter(whisper=whisper).fit(train, y_train)
    probs = head.predict_proba(test)
    check_probs(probs, len(test))
    assert macro_f1(head.labels, y_test, probs) > 0.6
    loaded = round_trip(head, test, tmp_path)
    loaded.whisper = whisper  # share the loaded model, as the streamer does
    np.testing.assert_allclose(loaded.predict_proba(test), probs, atol=1e-6)
    with pytest.raises(ValueError, match="384-d.*same ASR model"):
        loaded.predict_proba_embeddings(np.zeros((1, 384)))
