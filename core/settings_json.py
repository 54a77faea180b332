"""Settings dataclasses that travel inside bundles as JSON.

Reading them back is strict: a key this version does not know (a bundle from a newer version, or
a hand-edited one) is an error naming the key, never silently dropped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="JsonSettings")


class JsonSettings:
    """A frozen settings dataclass that is saved with a model and read back strictly."""

    what: ClassVar[str] = "settings"  # the name used in error messages, e.g. "feature"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.what} settings {unknown}; known: {sorted(known)}")
        return cls(**data)


def read_model_config(path: Path, kind: str) -> dict[str, Any]:
    """A model folder's config.json, refused when it belongs to another kind of model."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("kind") != kind:
        raise ValueError(f"{path} holds a {config.get('kind')!r} model, not {kind!r}")
    return config
