"""Reading config.toml: tomllib into dataclasses, checked key by key, and the sections both programs read.

One file configures both programs. Each program describes the tables it reads as a dataclass of
section dataclasses (`streamer/config.py`, `trainer/config.py`); the sections both read (`asr`,
`emotion`) live here. `load` validates the tables the program's schema has and skips the ones
SECTIONS assigns to the other program, so `python -m streamer run --config config.toml` does not
trip over `[train]`, while a table no program reads (`[sever]`) is an error.

Every value is checked when the file is read, never later in the middle of a session: a key the
schema does not know, a value of the wrong type, or one outside its allowed range (`setting(...,
min=..., max=...)`, `choices=`) is a UserError that names the key, the file and what is allowed.
Command-line flags go through the same checks in `override()`.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from core.errors import UserError

T = TypeVar("T")

# Every top-level table of config.toml, and which program reads it ("core": both).
SECTIONS: dict[str, str] = {
    "server": "streamer",
    "audio": "streamer",
    "vad": "streamer",
    "record": "streamer",
    "asr": "core",
    "emotion": "core",
    "speakers": "core",
    "train": "trainer",
}


def setting(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
            choices: tuple[Any, ...] | None = None, default_factory: Any = dataclasses.MISSING,
            above: float | None = None) -> Any:
    """A dataclass field with the range or choices its value must respect, checked by `load`/`override`.

    `min`/`max` are inclusive; `above` is an exclusive lower bound (a rate that must be positive).
    """
    metadata = {"min": min, "max": max, "choices": choices, "above": above}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class AsrConfig:
    """Speech recognition, for the live daemon, `analyze`, `trainer predict` and the whisper_head model."""

    model: str = "embedded"  # "embedded" (Whisper base from PyPI), a faster-whisper name, or a path
    language: str = "ko"
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    compute_type: str = "auto"  # auto = int8 on CPU, float16 on CUDA
    cpu_threads: int = setting(2, min=0, max=256)  # 0 = CTranslate2's default
    decoder_threads: int = setting(1, min=0, max=256)  # CPU threads of the decoder; 0 = cpu_threads, one model
    beam_size: int = setting(1, min=1, max=32)
    short_beam_size: int = setting(5, min=0, max=32)  # beam below short_beam_max_s; 0 = beam_size
    short_beam_max_s: float = setting(2.0, min=0.0, max=30.0)
    short_window: bool = True  # encode utterances in a short window instead of 30 s
    no_speech_threshold: float = setting(0.6, min=0.0, max=1.0)
    logprob_threshold: float = setting(-1.0, max=0.0)
    cache_dir: str = ""  # where the embedded model is joined; "" = ~/.cache/korean-emotion-monitor


@dataclass
class EmotionConfig:
    """Which emotion bundle to load, and where its models run."""

    bundle: str = "default"  # "default" (shipped) or the path of a bundle folder from `trainer train`
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"


@dataclass
class SpeakersConfig:
    """Who is speaking (core/attribution.py): for the daemon, `analyze` and `trainer predict`."""

    max_speakers: int = setting(2, min=0, max=16)  # voices told apart; 0 = no speaker attribution
    voiceprints: str = ""  # folder of enrolled voiceprints; "" = ~/.local/share/korean-emotion-monitor/voiceprints
    channel_roles: list[str] = field(default_factory=list)  # with audio.channels = "split": role of channel 1, 2
    new_speaker_similarity: float = setting(0.75, min=0.0, max=1.0)  # below this to every known voice: a new voice
    change_similarity: float = setting(0.65, min=0.0, max=1.0)  # below this the two sides of an utterance are two voices
    device: str = "auto"  # where the speaker encoder runs: "auto", "cpu", "cuda" or "cuda:N"


def load(path: str | Path | None, schema: type[T]) -> T:
    """Read a config file (None = all defaults) into `schema`, a dataclass of section dataclasses."""
    if path is None:
        return schema()
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; pass --config with an existing file") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder; pass --config with a .toml file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
                        "save the config file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    own = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(name for name in data if name not in own and name not in SECTIONS)
    if unknown:
        raise UserError(f"{path}: unknown section [{unknown[0]}]; sections are: {', '.join(sorted(SECTIONS))}")
    return _build(schema, {name: value for name, value in data.items() if name in own}, str(path), prefix="")


def override(config: T, dotted: dict[str, Any]) -> T:
    """A copy of `config` with `{"section.key": value}` replaced (None values are skipped), checked
    as strictly as the file is."""
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for key, value in dotted.items():
        if value is None:
            continue
        section_name, _, name = key.partition(".")
        section = sections[section_name]
        spec = {f.name: f for f in dataclasses.fields(section)}[name]
        expected = typing.get_type_hints(type(section))[name]
        checked = _check(value, expected, f"{section_name}.{name}", "the command line", spec)
        try:
            sections[section_name] = dataclasses.replace(section, **{name: checked})
        except ValueError as exc:  # the section's own cross-field check (__post_init__)
            raise UserError(f"the command line: [{section_name}] {exc}") from None
    return type(config)(**sections)


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise UserError(f"{source}: [{where}] must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    specs = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(specs))
    if unknown:
        raise UserError(
            f"{source}: unknown key '{prefix}{unknown[0]}' in [{where}]; expected one of: {', '.join(sorted(specs))}"
        )
    values = {}
    for name, value in data.items():
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = _build(expected, value, source, prefix=f"{prefix}{name}.")
        else:
            values[name] = _check(value, expected, f"{prefix}{name}", source, specs[name])
    try:
        return cls(**values)
    except ValueError as exc:  # a section's own cross-field check (__post_init__)
        raise UserError(f"{source}: [{where}] {exc}") from None


def _check(value: Any, expected: Any, key: str, source: str, spec: dataclasses.Field | None = None) -> Any:
    value = _typed(value, expected, key, source)
    meta = spec.metadata if spec is not None else {}
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise UserError(f"{source}: {key} = {value!r} is not allowed; choose one of: {', '.join(map(repr, choices))}")
    low, high, above = meta.get("min"), meta.get("max"), meta.get("above")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{source}: {key} = {value} is not a finite number")
        if (low is not None and value < low) or (high is not None and value > high) or (above is not None and value <= above):
            raise UserError(f"{source}: {key} = {value!r} is outside its range; allowed: {_range(low, high, above)}")
    return value


def _range(low: float | None, high: float | None, above: float | None) -> str:
    lower = f"above {above:g}" if above is not None else (f"at least {low:g}" if low is not None else "")
    upper = f"at most {high:g}" if high is not None else ""
    return " and ".join(part for part in (lower, upper) if part)


def _typed(value: Any, expected: Any, key: str, source: str) -> Any:
    """Return value if it matches the annotated type (ints are accepted for floats)."""
    origin = typing.get_origin(expected)
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be a list of {item_type.__name__}, got {value!r}")
        return [_typed(item, item_type, f"{key}[{i}]", source) for i, item in enumerate(value)]
    if origin is dict:
        key_type, item_type = typing.get_args(expected)
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} must be a table of {item_type.__name__}, got {value!r}")
        return {k: _typed(v, item_type, f"{key}.{k}", source) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _typed(value, option, key, source)
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
