"""Enrolled voiceprints: one small JSON file per role in a folder that stays on this machine.

A voiceprint is an embedding (core/speakers.py), never audio: 256 numbers from which the voice
cannot be played back. It is compared with the voices of a session to give them roles
(`counselor`, `client`, an enrolled name). Feeds, recordings and exports carry only the role and
the similarity, never the numbers.

Files are written atomically (a temporary file, then a rename), so a crash leaves the old
voiceprint or the new one, never half of one. A file that cannot be read back (damaged, from
another speaker model, edited by hand) stops the start with its name: a daemon that silently
skipped it would give the counselor's words to the client.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.speakers import EMBEDDING_DIM, MODEL_NAME

SUFFIX = ".voiceprint.json"
ROLE = re.compile(r"[^\W\d_][\w-]{0,39}")  # a word of letters (Korean too), digits, _ or -; starts with a letter
APP_DIR = "korean-emotion-monitor"


@dataclass
class Voiceprint:
    role: str
    embedding: np.ndarray  # (256,) unit vector
    speech_s: float  # seconds of speech it was made from
    created: str  # ISO-8601 time
    model: str = MODEL_NAME

    def to_json(self) -> dict:
        return {"role": self.role, "model": self.model, "speech_s": round(self.speech_s, 2), "created": self.created,
                "embedding": [round(float(x), 6) for x in self.embedding]}


def default_dir() -> Path:
    """~/.local/share/korean-emotion-monitor/voiceprints, honouring XDG_DATA_HOME."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / APP_DIR / "voiceprints"


def resolve_dir(setting: str | os.PathLike | None) -> Path:
    """The folder a `--voiceprints` / `speakers.voiceprints` value names ("" = the default)."""
    return Path(setting).expanduser() if setting else default_dir()


def check_role(role: str) -> str:
    if not ROLE.fullmatch(role or ""):
        raise UserError(f"role {role!r} is not a name; use a word such as counselor or client "
                        "(letters, digits, _ or -, starting with a letter, at most 40 characters)")
    return role


def path_for(folder: Path, role: str) -> Path:
    return folder / f"{check_role(role)}{SUFFIX}"


def new(role: str, embedding: np.ndarray, speech_s: float) -> Voiceprint:
    return Voiceprint(check_role(role), np.asarray(embedding, dtype=np.float32), speech_s,
                      datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"))


def save(folder: Path, voiceprint: Voiceprint) -> Path:
    """Write (or replace) the role's voiceprint atomically; returns its path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = path_for(folder, voiceprint.role)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(voiceprint.to_json()) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write voiceprints into {folder} ({exc.strerror}); pick a writable --voiceprints DIR") from None
    return path


def _parse(path: Path) -> Voiceprint:
    def bad(why: str) -> UserError:
        return UserError(f"voiceprint {path} is damaged ({why}); enroll that role again "
                         f"(`python -m streamer enroll ROLE AUDIO...`) or delete the file")

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("model") != MODEL_NAME:
        raise UserError(f"voiceprint {path} was made by speaker model {data.get('model')!r}, not {MODEL_NAME!r}; "
                        "enroll that role again with this version")
    role, vector = data.get("role"), data.get("embedding")
    if role != path.name[: -len(SUFFIX)]:
        raise bad(f"its role {role!r} does not match its file name")
    if not isinstance(vector, list) or len(vector) != EMBEDDING_DIM or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
        raise bad(f"the embedding is not {EMBEDDING_DIM} finite numbers")
    embedding = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(embedding))
    if not 0.99 < norm < 1.01:
        raise bad(f"the embedding has length {norm:.3f}, not 1")
    speech = data.get("speech_s")
    return Voiceprint(role, embedding, float(speech) if isinstance(speech, (int, float)) else 0.0, str(data.get("created", "")))


def load_all(folder: Path) -> dict[str, Voiceprint]:
    """Every voiceprint in `folder` by role (an absent folder has none); UserError for a bad one."""
    if not folder.exists():
        return {}
    if not folder.is_dir():
        raise UserError(f"voiceprints folder {folder} is a file; give --voiceprints a folder")
    return {vp.role: vp for vp in (_parse(path) for path in sorted(folder.glob(f"*{SUFFIX}")))}


def delete(folder: Path, role: str) -> Path:
    path = path_for(folder, role)
    if not path.is_file():
        known = ", ".join(sorted(load_all(folder))) or "none"
        raise UserError(f"no voiceprint for role {role!r} in {folder}; enrolled roles: {known}")
    path.unlink()
    return path
