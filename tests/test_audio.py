"""Decoding any rate / channel count to 16 kHz mono keeps length and frequency content."""
import numpy as np
import pytest
import soundfile as sf

from core.audio import SAMPLE_RATE, decode as load_audio
from trainer.audio_cache import AudioCache, AudioSource, DecodeJob, decode_to_cache


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.mark.parametrize(
    "rate,seconds,freq",
    [(48_000, 1.0, 440.0), (8_000, 0.5, 1000.0), (44_100, 1.0, 3000.0), (16_000, 0.25, 2000.0)],
)
def test_mono_file_resamples_with_length_and_pitch(tmp_path, rate, seconds, freq):
    path = tmp_path / "a.wav"
    sf.write(path, tone(freq, rate, seconds), rate, subtype="PCM_16")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - SAMPLE_RATE * seconds) <= 1
    assert abs(peak_hz(x) - freq) < 5
    assert 0.45 < np.abs(x[200:-200]).max() < 0.55  # amplitude survives the resampler


def test_stereo_48k_averages_channels(tmp_path):
    path = tmp_path / "st.wav"
    stereo = np.stack([tone(440, 48_000, 1.0), tone(1320, 48_000, 1.0)], axis=1)
    sf.write(path, stereo, 48_000, subtype="PCM_16")
    x = load_audio(path)
    assert x.ndim == 1 and x.size == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    top2 = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top2 == pytest.approx([440, 1320], abs=2)
    # each channel contributes half its amplitude
    assert spectrum[np.argmin(abs(freqs - 440))] == pytest.approx(spectrum[np.argmin(abs(freqs - 1320))], rel=0.05)


def test_decode_to_cache_writes_16k_pcm16_and_reports_bad_input(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, np.clip(tone(300, 48_000, 0.5, amp=1.2), -1, 1), 48_000, subtype="PCM_16")
    target = tmp_path / "cache" / "r" / "x.wav"
    result = decode_to_cache(DecodeJob(AudioSource(src), target))
    assert result.error is None and result.frames == 8000
    info = sf.info(target)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16_000, 1, "PCM_16", 8000)

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 48_000, subtype="PCM_16")
    assert decode_to_cache(DecodeJob(AudioSource(empty), tmp_path / "e.wav")).error == "empty"
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    assert decode_to_cache(DecodeJob(AudioSource(zero_bytes), tmp_path / "z.wav")).error == "empty"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage")
    result = decode_to_cache(DecodeJob(AudioSource(corrupt), tmp_path / "c.wav"))
    assert result.frames == 0 and result.error and result.error != "empty"


def test_cache_index_round_trip_and_fingerprint_change(tmp_path):
    cache = AudioCache(tmp_path)
    cache.path("r/x").parent.mkdir(parents=True)
    cache.path("r/x").write_bytes(b"")
    cache.store("r/x", "fp1", 123)
    cache.save()
    again = AudioCache(tmp_path)
    assert again.lookup("r/x", "fp1") == 123
    assert again.lookup("r/x", "fp2") is None
    assert again.lookup("r/y", "fp1") is None
    cache.path("r/x").unlink()
    assert again.lookup("r/x", "fp1") is None
