"""torch features against librosa, the reference the seed's code and most of the literature use."""
import warnings

import librosa
import numpy as np
import pytest
import torch

from core.device import pick_device
from core.errors import UserError
from core.features import (
    FeatureSettings,
    MelFeatures,
    compute_features,
    mel_filterbank,
    pad_batch,
)

torch.set_num_threads(1)
SR = 16_000

# 128 mels over 201 FFT bins (the seed's settings) leaves the lowest Slaney filters empty; librosa
# warns about it. The torch filterbank reproduces the same empty rows.
pytestmark = pytest.mark.filterwarnings("ignore:Empty filters detected")


def voice(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone over noise: energy across the whole mel range, quiet and loud parts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 80 * t / t[-1]
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.2 + 0.8 * (t < seconds / 2))
    return (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def librosa_db(y: np.ndarray, htk: bool = False, norm: str | None = "slaney") -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=400, hop_length=160, n_mels=128, htk=htk, norm=norm)
    return librosa.power_to_db(mel, ref=1.0, top_db=80.0)


@pytest.mark.parametrize("scale,norm", [("slaney", "slaney"), ("htk", None)])
def test_filterbank_matches_librosa(scale, norm):
    ours = mel_filterbank(FeatureSettings(mel_scale=scale, norm=norm)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = librosa.filters.mel(sr=SR, n_fft=400, n_mels=128, htk=scale == "htk", norm=norm)
    assert ours.shape == ref.shape == (128, 201)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * ref.max())


def test_log_mel_matches_librosa_in_db_and_in_power():
    y = voice(1.3)
    ours = compute_features([y], device="cpu")[0]
    ref = librosa_db(y)
    assert ours.shape == ref.shape == (128, 1 + len(y) // 160)
    assert np.abs(ours - ref).max() < 0.01  # dB
    loud = ref > ref.max() - 40  # where the power itself is meaningful, compare it relatively
    np.testing.assert_allclose(10 ** (ours[loud] / 10), 10 ** (ref[loud] / 10), rtol=5e-3)


def test_htk_variant_matches_librosa_htk():
    y = voice(0.8, seed=1)
    ours = compute_features([y], FeatureSettings(mel_scale="htk", norm=None), device="cpu")[0]
    assert np.abs(ours - librosa_db(y, htk=True, norm=None)).max() < 0.01


def test_a_clip_in_a_padded_batch_gets_the_same_features_as_alone():
    long, short = voice(1.5, seed=2), voice(0.7, seed=3)[: 11_111]  # a length that is not a whole hop
    batched = compute_features([long, short], device="cpu")
    alone = compute_features([short], device="cpu")[0]
    assert batched[1].shape == alone.shape == (128, 1 + 11_111 // 160)
    np.testing.assert_allclose(batched[1], alone, atol=1e-3)
    # and both agree with librosa, whose top_db floor sees only this clip
    assert np.abs(batched[1] - librosa_db(short)).max() < 0.01


def test_mfcc_matches_librosa():
    y = voice(1.1, seed=4)
    ours = compute_features([y], FeatureSettings(kind="mfcc", n_mfcc=40), device="cpu")[0]
    ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=40, n_fft=400, hop_length=160, n_mels=128)
    assert ours.shape == ref.shape == (40, 1 + len(y) // 160)
    np.testing.assert_allclose(ours, ref, atol=0.02 + 1e-4 * np.abs(ref).max())


def test_features_stay_float32_inside_a_half_precision_autocast():
    y = voice(0.5, seed=5)
    module = MelFeatures()
    waves, lengths = pad_batch([y])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = module(waves, lengths)
    assert feats.dtype == torch.float32
    assert np.abs(feats[0].numpy() - librosa_db(y)).max() < 0.01


def test_auto_device_follows_cuda_availability():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the CUDA path cannot run here")
def test_cuda_path_is_selected_and_agrees_with_cpu():
    y = voice(1.0, seed=6)
    module = MelFeatures().to(pick_device("auto"))
    assert module.filterbank.device.type == "cuda"
    waves, lengths = pad_batch([y], "cuda")
    with torch.no_grad():
        feats, _ = module(waves, lengths)
    assert feats.device.type == "cuda"
    np.testing.assert_allclose(feats[0].cpu().numpy(), compute_features([y], device="cpu")[0], atol=0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_says_what_to_use():
    with pytest.raises(UserError, match="no CUDA GPU.*'auto' or 'cpu'"):
        pick_device("cuda")


def test_bad_settings_and_input_are_named():
    with pytest.raises(ValueError, match="kind 'spectrogram'"):
        FeatureSettings(kind="spectrogram")
    with pytest.raises(ValueError, match="n_mfcc 200 must be between 1 and n_mels"):
        FeatureSettings(kind="mfcc", n_mfcc=200)
    with pytest.raises(ValueError, match="fmax"):
        FeatureSettings(fmax=9000.0)
    with pytest.raises(ValueError, match="unknown feature settings \\['hop'\\]"):
        FeatureSettings.from_json({"hop": 160})
    with pytest.raises(ValueError, match="clip 1 of the batch is empty"):
        pad_batch([voice(0.2), np.zeros(0, np.float32)])


def test_settings_round_trip_through_json():
    settings = FeatureSettings(kind="mfcc", n_mfcc=20, mel_scale="htk", norm=None, fmax=7600.0)
    assert FeatureSettings.from_json(settings.to_json()) == settings
