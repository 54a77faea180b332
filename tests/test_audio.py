"""Decoding any rate / channel count to 16 kHz mono keeps length and frequency content."""
import numpy as np
import pytest
import soundfile as sf

from core.audio import SAMPLE_RATE
from core.audio import decode as load_audio
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


# --- the one decoder (core/audio.py) --------------------------------------------------------------


def test_streaming_and_whole_file_decoding_give_the_same_samples(tmp_path):
    from core.audio import decode, stream

    path = tmp_path / "long.wav"
    sf.write(path, np.stack([tone(300, 44_100, 3.3), tone(700, 44_100, 3.3)], axis=1), 44_100, subtype="PCM_24")
    chunks = list(stream(path))
    assert all(len(c) >= SAMPLE_RATE for c in chunks[:-1]) and len(chunks) >= 3  # about a second at a time
    np.testing.assert_array_equal(np.concatenate(chunks), decode(path))
    np.testing.assert_array_equal(decode(path.read_bytes()), decode(path))  # a ZIP member decodes as its file


def test_the_resampler_is_soxr_hq_on_the_averaged_channels(tmp_path):
    import soxr

    from core.audio import decode

    path = tmp_path / "st.wav"
    sf.write(path, np.stack([tone(440, 48_000, 2.0), tone(100, 48_000, 2.0, 0.2)], axis=1), 48_000, subtype="FLOAT")
    raw, rate = sf.read(path, dtype="float32")
    np.testing.assert_allclose(decode(path), soxr.resample(raw.mean(axis=1), rate, SAMPLE_RATE, quality="HQ"), atol=1e-6)
    apart = decode(path, mono=False)
    assert apart.shape == (2 * SAMPLE_RATE, 2)
    np.testing.assert_allclose(apart.mean(axis=1), decode(path), atol=1e-6)


def test_nan_samples_reach_the_caller_as_nan(tmp_path):
    from core.audio import decode

    path = tmp_path / "nan.wav"
    wave = tone(440, SAMPLE_RATE, 1.0)
    wave[100:110] = np.nan
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    assert np.isnan(decode(path)).sum() == 10  # kept for the caller to report, not turned into clicks


def test_undecodable_input_names_the_file_and_what_would_work(tmp_path):
    from core.audio import AudioError, decode

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + bytes(range(256)) * 20)
    with pytest.raises(AudioError, match=f"{junk}.*FFmpeg can decode"):
        decode(junk)
    with pytest.raises(AudioError, match="does not exist"):
        decode(tmp_path / "missing.flac")
