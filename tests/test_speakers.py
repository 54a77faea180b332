"""Who is speaking, part by part with real parts: the GE2E encoder on espeak-ng voices, the online
tracker, turn splitting behind the real Silero VAD, split channels, voiceprints and `enroll`.

The two voices (testsupport/conversation.py VOICES) were chosen by measuring: same-voice sentences
embed >= 0.80 alike, the two voices <= 0.70. Tests that embed speech are marked slow (the encoder
costs ~50 ms a sentence on 2 cores, and espeak-ng runs per sentence)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core import voiceprints
from core.attribution import SpeakerTracker, unit
from core.errors import UserError
from core.speakers import EMBEDDING_DIM, SAMPLE_RATE
from streamer.config import VadConfig
from testsupport.conversation import (
    VOICES,
    conversation,
    require_sox,
    sox_shift,
    stereo,
    write,
)
from testsupport.speech import SENTENCES, require_espeak, synthesize, trim


@pytest.fixture(scope="module")
def encoder():
    from core.speakers import SpeakerEncoder

    return SpeakerEncoder("cpu")


def voice(sentence: int, speaker: int) -> np.ndarray:
    return trim(synthesize(SENTENCES[sentence], VOICES[speaker]))


def test_the_mel_the_encoder_sees_is_librosas(encoder):
    import librosa

    audio = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
    reference = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40).T
    assert np.allclose(encoder.mel(audio).numpy(), reference, rtol=1e-4, atol=1e-6 * reference.max())


def test_partials_cover_the_utterance_as_resemblyzer_cuts_them():
    from core.speakers import partial_slices

    assert partial_slices(SAMPLE_RATE // 2) == [(0, 160)]  # shorter than one partial: one, padded
    slices = partial_slices(5 * SAMPLE_RATE)
    assert slices[0] == (0, 160) and all(b - a == 160 for a, b in slices)
    assert [b[0] - a[0] for a, b in zip(slices, slices[1:])] == [77] * (len(slices) - 1)  # 1.3 a second
    assert slices[-1][1] * 160 >= 0.75 * 160 * 160 + slices[-1][0] * 160  # the last is at least 75% audio


@pytest.mark.slow
def test_same_voice_embeds_closer_than_the_other_voice(encoder):
    require_espeak()
    a = [encoder.embed(voice(i, 0)) for i in range(4)]
    b = [encoder.embed(voice(i, 1)) for i in range(4)]
    assert all(abs(np.linalg.norm(e) - 1) < 1e-5 and e.shape == (EMBEDDING_DIM,) for e in a + b)
    same = min(float(x @ y) for group in (a, b) for i, x in enumerate(group) for y in group[i + 1:])
    other = max(float(x @ y) for x in a for y in b)
    assert same > 0.78 and other < 0.72 and same - other > 0.08


@pytest.mark.slow
def test_ids_follow_the_voices_and_an_enrolled_voice_gets_its_role(encoder):
    require_espeak()
    order = [0, 1, 0, 1, 1, 0]
    embeddings = [encoder.embed(voice(i, speaker)) for i, speaker in enumerate(order)]
    tracker = SpeakerTracker(2, 0.75)
    got = [tracker.assign(e, 2.5) for e in embeddings]
    assert [a.id for a in got] == ["S1", "S2", "S1", "S2", "S2", "S1"]
    assert got[0].similarity is None and got[1].similarity is None and min(a.similarity for a in got[2:]) > 0.75
    assert all(a.role is None for a in got)

    # The client speaks first; the counselor's voiceprint (from other sentences) is known.
    counselor = unit(sum(encoder.embed(voice(i, 0)) for i in (4, 5)))
    tracker = SpeakerTracker(2, 0.75, {"counselor": counselor})
    got = [tracker.assign(e, 2.5) for e in [embeddings[1], embeddings[0], embeddings[3], embeddings[2]]]
    assert [(a.id, a.role) for a in got] == [("S1", "client"), ("S2", "counselor"), ("S1", "client"), ("S2", "counselor")]
    assert got[1].similarity > 0.75  # the counselor was known before speaking


@pytest.mark.slow
def test_more_voices_than_max_speakers_go_to_the_nearest_with_a_low_similarity(encoder):
    require_espeak(), require_sox()
    third = sox_shift(voice(2, 0), 900)  # the low voice nine semitones up: a third voice
    tracker = SpeakerTracker(2, 0.75)
    tracker.assign(encoder.embed(voice(0, 0)), 2.5)
    tracker.assign(encoder.embed(voice(1, 1)), 2.5)
    stranger = tracker.assign(encoder.embed(third), 2.5)
    assert stranger.id in ("S1", "S2") and stranger.similarity < 0.75
    assert tracker.assign(encoder.embed(voice(3, 0)), 2.5).id == "S1"  # the others are unharmed


def test_a_short_backchannel_never_opens_a_speaker():
    rng = np.random.default_rng(1)
    a, b = (np.abs(rng.standard_normal(EMBEDDING_DIM)) for _ in range(2))
    tracker = SpeakerTracker(2, 0.99)
    assert tracker.assign(a, 2.0).id == "S1"
    assert tracker.assign(b, 0.6).id == "S1"  # too short to be a new voice: the nearest, with its similarity
    assert tracker.assign(b, 2.0).id == "S2"
    assert tracker.peek(a).id == "S1"


def test_an_eager_preview_is_what_the_assignment_then_gives_and_teaches_nothing():
    """The eager end asks the tracker before the utterance is final; the answer must be the one
    `assign` then gives (same id, role and similarity), and asking must change nothing."""
    rng = np.random.default_rng(2)
    voices = [np.abs(rng.standard_normal(EMBEDDING_DIM)) for _ in range(3)]
    tracker = SpeakerTracker(2, 0.9, {"counselor": voices[2]})
    for voice, seconds in [(voices[0], 2.0), (voices[0], 1.5), (voices[1], 0.5), (voices[1], 2.0), (voices[2], 3.0),
                           (voices[1], 2.0)]:
        heard = voice + rng.standard_normal(EMBEDDING_DIM) * 0.05
        first, again = tracker.preview(heard, seconds), tracker.preview(heard, seconds)
        assert first == again == tracker.assign(heard, seconds)
    assert tracker.assign(voices[0], 2.0).id == "S1" and tracker.assign(voices[2], 2.0).role == "counselor"


@pytest.mark.slow
def test_a_turn_taken_without_a_pause_is_split_behind_the_real_vad(encoder):
    from streamer.segmenter import Segmenter, Utterance
    from streamer.speakers import SpeakerStage

    require_espeak()
    audio, truth = conversation([(0, SENTENCES[0]), (1, SENTENCES[1]), (0, SENTENCES[2])], gap_s=0.0)
    stage = SpeakerStage(Segmenter(VadConfig()), encoder, SpeakerTracker(2, 0.75), change_similarity=0.65)
    events = [e for start in range(0, len(audio), SAMPLE_RATE) for e in stage.push(audio[start:start + SAMPLE_RATE])]
    utterances = [e for e in events + stage.flush() if isinstance(e, Utterance)]
    assert [u.id for u in utterances] == [1, 2, 3]
    assert [u.speaker["id"] for u in utterances] == ["S1", "S2", "S1"]
    for cut, turn in zip([u.start for u in utterances[1:]], truth[1:]):
        assert abs(cut - turn.start) < 0.5
    assert utterances[0].end == utterances[1].start and len(utterances[1].audio) == round((utterances[1].end - utterances[1].start) * SAMPLE_RATE)
    # A reply after a breath (0.3 s, shorter than vad.min_silence_ms) is one VAD utterance, split at the pause.
    quick, truth = conversation([(0, SENTENCES[1]), (1, SENTENCES[2])], gap_s=0.3)
    stage = SpeakerStage(Segmenter(VadConfig()), encoder, SpeakerTracker(2, 0.75), change_similarity=0.65)
    parts = [e for e in stage.push(quick) + stage.flush() if isinstance(e, Utterance)]
    assert [u.speaker["id"] for u in parts] == ["S1", "S2"]
    assert truth[0].end <= parts[1].start <= truth[1].start
    # One voice with pauses: two utterances from the VAD, none split further.
    paused, _ = conversation([(0, SENTENCES[0]), (0, SENTENCES[2])], gap_s=1.0)
    stage = SpeakerStage(Segmenter(VadConfig()), encoder, SpeakerTracker(2, 0.75), change_similarity=0.65)
    assert [e.speaker["id"] for e in stage.push(paused) + stage.flush() if isinstance(e, Utterance)] == ["S1", "S1"]


@pytest.mark.slow
def test_split_channels_attribute_by_channel_keep_overlap_and_drop_bleed():
    from streamer.channels import ChannelSegmenter
    from streamer.segmenter import Segmenter, Utterance

    require_espeak()
    a, b = voice(0, 0), voice(1, 1)
    ch0 = np.zeros(12 * SAMPLE_RATE, np.float32)
    ch1 = np.zeros_like(ch0)
    ch0[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + len(a)] = a  # A alone, then B alone, then both at once
    ch1[4 * SAMPLE_RATE : 4 * SAMPLE_RATE + len(b)] = b
    ch0[8 * SAMPLE_RATE : 8 * SAMPLE_RATE + len(a)] = a
    ch1[int(8.5 * SAMPLE_RATE) : int(8.5 * SAMPLE_RATE) + len(b)] = b[: len(ch1) - int(8.5 * SAMPLE_RATE)]
    audio = stereo((ch0, ch1), bleed_db=-12.0)
    segmenter = ChannelSegmenter([Segmenter(VadConfig()), Segmenter(VadConfig())], ["counselor", "client"], keep_s=20)
    utterances = [e for e in segmenter.push(audio) + segmenter.flush() if isinstance(e, Utterance)]
    assert [(u.speaker["id"], u.speaker["role"]) for u in utterances] == [
        ("S1", "counselor"), ("S2", "client"), ("S1", "counselor"), ("S2", "client")]
    assert [u.id for u in utterances] == [1, 2, 3, 4]
    assert segmenter.bleed_dropped >= 2  # each lone voice was heard, quieter, on the other microphone
    assert utterances[2].end > utterances[3].start  # the overlap is two utterances
    with pytest.raises(ValueError, match="2 channels"):
        segmenter.push(ch0)


# -- voiceprints and enrolment --------------------------------------------------------------------


def test_voiceprints_round_trip_atomically_and_hold_no_audio(tmp_path):
    embedding = np.full(EMBEDDING_DIM, 1 / np.sqrt(EMBEDDING_DIM), np.float32)
    path = voiceprints.save(tmp_path / "vp", voiceprints.new("counselor", embedding, 12.3))
    assert [p.name for p in (tmp_path / "vp").iterdir()] == [path.name]  # no temporary file left
    data = json.loads(path.read_text())
    assert set(data) == {"role", "model", "speech_s", "created", "embedding"} and len(data["embedding"]) == EMBEDDING_DIM
    loaded = voiceprints.load_all(tmp_path / "vp")
    assert list(loaded) == ["counselor"] and np.allclose(loaded["counselor"].embedding, embedding, atol=1e-6)
    voiceprints.delete(tmp_path / "vp", "counselor")
    assert voiceprints.load_all(tmp_path / "vp") == {}
    with pytest.raises(UserError, match="no voiceprint for role 'client'"):
        voiceprints.delete(tmp_path / "vp", "client")
    for bad in ("", "../x", "1st", "a b", "x" * 41):
        with pytest.raises(UserError, match="is not a name"):
            voiceprints.check_role(bad)
    assert voiceprints.check_role("상담사") == "상담사"


@pytest.mark.parametrize("content, why", [
    ("{not json", "not readable JSON"),
    ('{"role": "counselor", "model": "resemblyzer-ge2e", "embedding": [0.1, 0.2]}', "256 finite numbers"),
    ('{"role": "client", "model": "resemblyzer-ge2e", "embedding": []}', "does not match its file name"),
    ('{"role": "counselor", "model": "other-model", "embedding": []}', "made by speaker model 'other-model'"),
])
def test_a_damaged_voiceprint_is_named_and_stops_the_load(tmp_path, content, why):
    path = tmp_path / f"counselor{voiceprints.SUFFIX}"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        voiceprints.load_all(tmp_path)
    assert str(path) in str(err.value) and why in str(err.value)


@pytest.mark.slow
def test_enroll_lists_and_deletes_and_refuses_too_little_speech(tmp_path, capsys):
    from streamer.__main__ import main

    require_espeak()
    folder = tmp_path / "vp"
    me = write(np.concatenate([voice(0, 0), np.zeros(SAMPLE_RATE // 2, np.float32), voice(1, 0)]), tmp_path / "me.wav")
    assert main(["enroll", "counselor", str(me), "--voiceprints", str(folder)]) == 0
    stored = voiceprints.load_all(folder)["counselor"]
    assert stored.speech_s > 4.0 and stored.role == "counselor"
    assert (folder / f"counselor{voiceprints.SUFFIX}").stat().st_size < 8000  # 256 numbers, not seconds of audio

    silence = write(np.zeros(3 * SAMPLE_RATE, np.float32), tmp_path / "silence.wav")
    assert main(["enroll", "client", str(silence), "--voiceprints", str(folder)]) == 2
    assert f"{silence} has no speech" in capsys.readouterr().err
    short = write(trim(synthesize("Yes, okay.", VOICES[1])), tmp_path / "short.wav")
    assert main(["enroll", "client", str(short), "--voiceprints", str(folder)]) == 2
    assert "needs at least 3 s" in capsys.readouterr().err and "client" not in voiceprints.load_all(folder)

    assert main(["voiceprints", "--voiceprints", str(folder)]) == 0
    assert "counselor" in capsys.readouterr().out
    assert main(["voiceprints", "--delete", "counselor", "--voiceprints", str(folder)]) == 0
    assert voiceprints.load_all(folder) == {}
