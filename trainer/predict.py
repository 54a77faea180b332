"""Classify the emotion of each text and/or audio line of a JSONL file into another JSONL file.

Input, one JSON object a line (blank lines are skipped):
  {"id": "a1", "text": "오늘 정말 기뻐요"}        text is classified as given
  {"id": "a2", "audio": "clips/a2.wav"}           audio is decoded to 16 kHz mono and transcribed
  {"id": "a3", "text": "...", "audio": "a3.wav"}  the given text is used (no ASR); the audio feeds the
                                                  bundle's audio models, when it has any
`id` is a string or a number and comes back as given. A relative audio path is relative to the
input file's folder (as in `trainer prepare`'s manifest). Any format FFmpeg decodes works (core/audio.py).

Output, one line per input line, in input order:
  {"id", "label", "probs": {label: p}, "text", "audio", "multimodal", "used", "transcript", "speaker"}
`text` / `audio` / `multimodal` are the per-modality results ({"label", "probs"}) or null when that
model is absent or had no input; `used` names the results the final one combines; `transcript` is
what ASR heard (null when the line's text was given); `notes`, when present, says what was done to
the input (text over MAX_TEXT_CHARS cut, NaN samples read as silence). `speaker` is {"id", "role",
"similarity"} for an audio line (the lines of one input are taken as one conversation, in order:
`--speakers N`, `--voiceprints DIR`, as for the streamer; core/attribution.py) and null for a text
line. A line that cannot be predicted comes out as
{"id", "line", "error"}: what was wrong and what to do. The run goes on past bad lines.

Exit status: 0 when at least one line was predicted, 1 when lines were read but none could be
predicted, 2 for a problem with the command itself (missing input, unusable bundle or config).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from core.errors import UserError

BATCH = 32  # lines per model call: amortises the encoder without holding a long file in memory
# Longer text is cut here, with a note in that line's result. The text models read 128-512 tokens
# and nothing a person says in one turn is this long; a 1 MB line took minutes in the n-grams and
# held up every line after it.
MAX_TEXT_CHARS = 2000


@dataclass
class Line:
    """One parsed input line; `error` set means it will not be predicted."""

    number: int
    id: Any = None
    text: str | None = None
    audio: Path | None = None
    error: str | None = None
    waveform: np.ndarray | None = None
    transcript: str | None = None
    dropped: str | None = None  # why ASR dropped what it heard ("no_speech", ...), when it did
    notes: list[str] = field(default_factory=list)  # what was done to the input, said in the result
    speaker: dict | None = None


def parse_line(raw: str, number: int, base: Path) -> Line:
    """Validate one JSONL line; anything wrong becomes `error`, worded for the person who wrote it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Line(number, error=f"line {number} is not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object per line")
    if not isinstance(data, dict):
        return Line(number, error=f"line {number} is a JSON {type(data).__name__}, not an object; write {{\"id\": ..., \"text\": ...}}")
    line = Line(number, id=data.get("id"))
    if isinstance(line.id, bool) or not isinstance(line.id, (str, int, float)) or line.id == "":
        line.id = None
        line.error = f'line {number} has no "id" (a non-empty string or a number); add one so results can be matched to inputs'
        return line
    text, audio = data.get("text"), data.get("audio")
    if text is not None and not isinstance(text, str):
        line.error = f'line {number}: "text" must be a string, got {type(text).__name__}'
    elif audio is not None and (not isinstance(audio, str) or not audio.strip()):
        line.error = f'line {number}: "audio" must be a file path (a non-empty string)'
    elif not (text or "").strip() and audio is None:
        line.error = f'line {number} has neither "text" nor "audio"; give the sentence as "text" or a sound file path as "audio"'
    else:
        line.text = text.strip() if text and text.strip() else None
        if line.text and len(line.text) > MAX_TEXT_CHARS:
            line.notes.append(f"text cut from {len(line.text)} to its first {MAX_TEXT_CHARS} characters")
            line.text = line.text[:MAX_TEXT_CHARS]
        line.audio = base / Path(audio).expanduser() if audio else None
    return line


def read_lines(path: Path) -> Iterator[Line]:
    base = path.resolve().parent
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield parse_line(raw, number, base)


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def decode(line: Line) -> None:
    from core.audio import AudioError
    from core.audio import decode as decode_audio

    if not line.audio.is_file():
        line.error = f"line {line.number}: audio file {line.audio} does not exist; relative paths are relative to the input file's folder"
        return
    try:
        waveform = decode_audio(line.audio)
    except AudioError as exc:
        line.error = f"line {line.number}: {exc}"
        return
    if waveform.size == 0:
        line.error = f"line {line.number}: audio {line.audio} is empty (no samples); check the recording"
        return
    bad = ~np.isfinite(waveform)
    if bad.any():
        line.notes.append(f"{int(bad.sum())} NaN or infinite samples in {line.audio} were read as silence")
        waveform = np.where(bad, np.float32(0.0), waveform)
    line.waveform = waveform


class Transcriber:
    """Loads Whisper on the first audio line that needs it; a load failure fails only audio lines."""

    def __init__(self, asr_config: Any, language: str):
        self.config, self.language = asr_config, language
        self.model: Any = None
        self.failure: str | None = None

    def __call__(self, line: Line) -> None:
        from core.asr import load_whisper, transcribe

        if self.model is None and self.failure is None:
            try:
                self.model = load_whisper(self.config)
            except UserError as exc:
                self.failure = str(exc)
        if self.failure:
            line.error = f"line {line.number}: cannot transcribe audio: {self.failure}"
            return
        heard = transcribe(self.model, line.waveform, self.language, self.config)
        line.transcript, line.dropped = heard.text.strip(), heard.filtered
        line.text = line.transcript or None


class Speakers:
    """Who speaks each audio line. Voiceprints are read at the start (a damaged one stops the run
    before anything is predicted); the encoder loads on the first audio line."""

    def __init__(self, config: Any):
        from core import voiceprints
        from core.attribution import SpeakerTracker

        self.config = config
        self.tracker = None
        self.encoder: Any = None
        if config.max_speakers:
            enrolled = voiceprints.load_all(voiceprints.resolve_dir(config.voiceprints))
            self.tracker = SpeakerTracker(config.max_speakers, config.new_speaker_similarity,
                                          {role: vp.embedding for role, vp in enrolled.items()})

    @property
    def on(self) -> bool:
        return self.tracker is not None

    def __call__(self, line: Line) -> None:
        from core.speakers import SAMPLE_RATE, SpeakerEncoder

        if self.encoder is None:
            self.encoder = SpeakerEncoder(self.config.device)
        embedding = self.encoder.embed(line.waveform)
        line.speaker = self.tracker.assign(embedding, len(line.waveform) / SAMPLE_RATE).to_json()


def prepare(line: Line, needs_audio: bool, transcriber: Transcriber, speakers: Speakers) -> None:
    """Decode, attribute and transcribe what the line, the bundle and the speaker settings need."""
    if line.error or line.audio is None:
        return
    if line.text is not None and not needs_audio and not speakers.on:
        return  # given text, no model to feed the audio to, no speakers: skip decoding
    decode(line)
    if line.error is None and speakers.on:
        speakers(line)
    if line.error is None and line.text is None:
        transcriber(line)


def result_json(line: Line, prediction: Any, roles: list[str]) -> dict[str, Any]:
    if prediction.used:
        notes = {"notes": line.notes} if line.notes else {}
        return {"id": line.id, **prediction.to_json(), "transcript": line.transcript, "speaker": line.speaker, **notes}
    if line.transcript == "":
        why = (
            f"no speech was recognised in {line.audio} (ASR: {line.dropped or 'empty'}), and the bundle has no audio model; "
            "check that the file holds speech in the --language given"
        )
    else:
        why = f"none of the bundle's models ({', '.join(roles)}) takes this line's input; give the input they need"
    return {"id": line.id, "line": line.number, "transcript": line.transcript, "speaker": line.speaker,
            "error": f"line {line.number}: {why}"}


def error_json(line: Line) -> dict[str, Any]:
    return {"id": line.id, "line": line.number, "error": line.error}


def predict_batch(lines: list[Line], bundle: Any, transcriber: Transcriber, speakers: Speakers) -> list[dict[str, Any]]:
    from core.bundle import Sample

    needs_audio = any(role in bundle.models for role in ("audio", "multimodal"))
    for line in lines:
        prepare(line, needs_audio, transcriber, speakers)
    good = [line for line in lines if line.error is None]
    predictions = iter(bundle.predict([Sample(text=line.text, audio=line.waveform, id=str(line.id)) for line in good]) if good else [])
    roles = sorted(bundle.models)
    return [result_json(line, next(predictions), roles) if line.error is None else error_json(line) for line in lines]


def batches(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write(handle: IO[str], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default=None, help="bundle folder, or 'default' for the shipped one (default: emotion.bundle)")
    parser.add_argument("--input", type=Path, required=True, help="JSONL: {id, text and/or audio} per line")
    parser.add_argument("--output", type=Path, required=True, help="JSONL written here, one line per input line")
    parser.add_argument("--config", type=Path, default=None, help="config.toml for the ASR and emotion settings")
    parser.add_argument("--language", default=None, help="language of the audio for ASR (default: asr.language, ko)")
    parser.add_argument("--speakers", type=int, metavar="N", help="voices to tell apart in the audio lines (default: speakers.max_speakers, 2; 0 = off)")
    parser.add_argument("--voiceprints", metavar="DIR", help="folder of enrolled voiceprints (default: speakers.voiceprints)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.bundle import load_bundle
    from trainer.config import load_config, override

    config = override(load_config(args.config), {"asr.language": args.language, "emotion.bundle": args.bundle,
                                                  "speakers.max_speakers": args.speakers, "speakers.voiceprints": args.voiceprints})
    if not args.input.is_file():
        raise UserError(f"input {args.input} does not exist; pass --input with a JSONL file")
    total = count_lines(args.input)
    if total == 0:
        raise UserError(f"input {args.input} has no lines; write one JSON object per line")
    if args.output.resolve() == args.input.resolve():
        raise UserError("--output is the same file as --input; choose another output path")
    speakers = Speakers(config.speakers)
    bundle = load_bundle(config.emotion.bundle, device=config.emotion.device)
    transcriber = Transcriber(config.asr, config.asr.language)

    predicted = errors = transcribed = 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as out, tqdm(total=total, unit="line", file=sys.stderr, disable=None) as bar:
        for batch in batches(read_lines(args.input), BATCH):
            rows = predict_batch(batch, bundle, transcriber, speakers)
            write(out, rows)
            errors += sum("error" in row for row in rows)
            predicted += sum("error" not in row for row in rows)
            transcribed += sum(row.get("transcript") is not None and "error" not in row for row in rows)
            bar.update(len(batch))

    print(
        f"predicted {predicted} of {predicted + errors} lines ({transcribed} from transcribed audio) into {args.output}"
        + (f"; {errors} lines have an \"error\" field saying what was wrong" if errors else ""),
        file=sys.stderr,
    )
    return 0 if predicted else 1
