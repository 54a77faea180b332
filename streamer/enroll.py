"""Enroll a voice: store a voiceprint (an embedding, never audio) of ROLE from recordings of that person.

    python -m streamer enroll counselor me1.wav me2.m4a [--voiceprints DIR]

Each file is decoded by core/audio.py and cut by the same VAD as a live session; only its speech
is embedded, and at least MIN_SPEECH_S of it is needed across the files, since a second or two
gives an unsteady voiceprint. The dashboard's "enroll my voice" (the /enroll socket,
streamer/server.py) goes through `make_voiceprint` too. Later sessions (`run`, `analyze`, `trainer
predict` with the same --voiceprints) give that voice its role.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from core.audio import SAMPLE_RATE
from core.errors import UserError
from streamer.config import VadConfig, load_config, override

MIN_SPEECH_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", help="the person's role or name, e.g. counselor, client, dr_kim")
    parser.add_argument("audio", nargs="+", type=Path, help="recordings of that person alone (any format FFmpeg decodes)")
    parser.add_argument("--voiceprints", metavar="DIR", help="folder of voiceprints (default: speakers.voiceprints)")
    parser.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")


def speech_of(audio: np.ndarray, vad: VadConfig) -> list[np.ndarray]:
    """The utterances the VAD finds in `audio` (16 kHz mono float32)."""
    from streamer.segmenter import Segmenter, Utterance

    segmenter = Segmenter(vad)
    events = segmenter.push(np.nan_to_num(audio)) + segmenter.flush()
    return [event.audio for event in events if isinstance(event, Utterance)]


def make_voiceprint(encoder: Any, recordings: Iterable[tuple[str, np.ndarray]], vad: VadConfig) -> tuple[np.ndarray, float]:
    """(embedding, seconds of speech) of one person from named recordings; UserError naming a
    recording without speech, or when all of them hold less than MIN_SPEECH_S."""
    from core.attribution import unit

    total, speech_s, names = None, 0.0, []
    for name, audio in recordings:
        names.append(name)
        utterances = speech_of(audio, vad)
        if not utterances:
            raise UserError(f"{name} has no speech the VAD can hear; record the person speaking "
                            f"(at least {MIN_SPEECH_S:g} s in all), close to the microphone")
        for utterance in utterances:
            seconds = len(utterance) / SAMPLE_RATE
            weighted = encoder.embed(utterance) * seconds
            total = weighted if total is None else total + weighted
            speech_s += seconds
    if speech_s < MIN_SPEECH_S:
        raise UserError(f"{', '.join(names)}: only {speech_s:.1f} s of speech; a voiceprint needs at least "
                        f"{MIN_SPEECH_S:g} s: record more of the person speaking, or give more files")
    return unit(total), speech_s


def run(args: argparse.Namespace) -> int:
    from core import voiceprints
    from core.audio import decode
    from core.speakers import SpeakerEncoder

    config = override(load_config(args.config), {"speakers.voiceprints": args.voiceprints})
    role = voiceprints.check_role(args.role)
    folder = voiceprints.resolve_dir(config.speakers.voiceprints)
    for path in args.audio:
        if not path.is_file():
            raise UserError(f"audio file {path} does not exist")
    encoder = SpeakerEncoder(config.speakers.device)
    embedding, speech_s = make_voiceprint(encoder, ((str(path), decode(path)) for path in args.audio), config.vad)
    path = voiceprints.save(folder, voiceprints.new(role, embedding, speech_s))
    print(f"enrolled {role!r} from {speech_s:.1f} s of speech in {len(args.audio)} file(s): {path} "
          "(a voice embedding, no audio)", file=sys.stderr)
    return 0


class BrowserEnrolment:
    """The dashboard's "enroll my voice": PCM16 frames on /enroll?role=NAME, then {"type": "done"}.

    The server hands it the frames of one connection; `finish` makes the voiceprint off the event
    loop, stores it and tells the running tracker, so the next utterances already carry the role.
    """

    MAX_S = 60.0  # more audio than this on one enrolment is refused rather than held

    def __init__(self, encoder: Any, tracker: Any, folder: Path, vad: VadConfig) -> None:
        self.encoder, self.tracker, self.folder, self.vad = encoder, tracker, folder, vad

    def check_role(self, role: str) -> str:
        from core import voiceprints

        return voiceprints.check_role(role)

    def too_long(self, samples: int) -> bool:
        return samples > self.MAX_S * SAMPLE_RATE

    def finish(self, role: str, pcm: bytes) -> dict[str, Any]:
        """Store `role`'s voiceprint from the PCM16 bytes; the reply's body. UserError when the
        recording has too little speech."""
        from core import voiceprints

        audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        embedding, speech_s = make_voiceprint(self.encoder, [("the recording from the dashboard", audio)], self.vad)
        voiceprints.save(self.folder, voiceprints.new(role, embedding, speech_s))
        self.tracker.enrol(role, embedding)
        return {"role": role, "speech_s": round(speech_s, 1)}
