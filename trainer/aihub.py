"""Finding and reading the AI Hub releases of dataset 263 as people actually unpack them.

Discovery rule (DIR is ``--aihub``):

1. Names are compared by a *key*: Unicode NFC (macOS writes Korean names decomposed), lower
   case, without spaces, ``_`` and ``-``, and without the extension; so ``5차년도_2차``,
   ``5차년도 2차`` and ``5차년도-2차`` are the same release, and ``5차년도`` is a different one.
2. In DIR, an entry whose key is a release's key belongs to that release:
   ``{release}.csv`` is its CSV, ``{release}.zip`` a ZIP of its wavs, and a folder ``{release}/``
   is searched at any depth for its CSV, ZIPs and ``.wav`` files. Any mix works (``4차년도.csv``
   next to a folder ``4차년도/`` of wavs, or a folder holding the CSV and the ZIP).
3. If no entry of DIR belongs to a release and DIR holds exactly one folder, that folder is
   searched instead (the wrapper folder an archive tool adds), at most two levels down.
4. Each release present needs exactly one CSV; audio without a CSV, or two CSVs, is an error
   rather than a guess. Releases that are absent are reported, not fatal; no release at all is.
5. Hidden files, ``__MACOSX`` folders and ``._*`` AppleDouble files are ignored everywhere,
   inside ZIPs too. A wav's id is its file name without ``.wav``, wherever it sits in a ZIP.

CSVs are decoded strictly as UTF-8 with BOM, UTF-8, then cp949 (the delivered encoding); the
one that worked is reported per file, and a file none decodes is an error naming it. The
delimiter is a comma, or a tab when the header line has tabs and no comma (a spreadsheet
"save as text"). Header cells are matched with all whitespace removed, so ``4번감정세기`` and
``4번 감정세기`` and stray spaces all match; columns are found by name, not position.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from trainer.audio_cache import AudioSource

RELEASES: tuple[str, ...] = ("4차년도", "5차년도", "5차년도_2차")

COLUMNS: tuple[str, ...] = (
    "wav_id", "발화문", "상황",
    "1번 감정", "1번 감정세기", "2번 감정", "2번 감정세기", "3번 감정", "3번 감정세기",
    "4번 감정", "4번감정세기", "5번 감정", "5번 감정세기",
    "나이", "성별",
)
ANNOTATORS = 5
MAX_WRAPPER_DEPTH = 2


def name_key(name: str) -> str:
    """The discovery key of a file or folder name (see the module docstring, rule 1)."""
    name = unicodedata.normalize("NFC", name)
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() in ("csv", "zip", "wav"):
        name = stem
    return "".join(c for c in name.lower() if not c.isspace() and c not in "_-")


def _column_key(cell: str) -> str:
    return "".join(unicodedata.normalize("NFC", cell).replace("\ufeff", "").split())


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


@dataclass
class ReleaseFiles:
    name: str
    csvs: list[Path] = field(default_factory=list)
    zips: list[Path] = field(default_factory=list)
    wavs: list[Path] = field(default_factory=list)


@dataclass
class RawRow:
    """One CSV row as text; validation and labelling happen in prepare."""

    release: str
    line: int
    wav_id: str
    text: str
    situation: str
    annotations: list[tuple[str, str]]  # five (emotion cell, intensity cell)
    age: str
    gender: str


@dataclass
class Release:
    name: str
    csv: Path
    encoding: str
    rows: list[RawRow]
    malformed: list[tuple[int, str]]  # (line, wav_id cell) of rows with more cells than the header
    extra_columns: list[str]  # unexpected header cells, ignored
    audio: dict[str, AudioSource]  # wav_id -> first source found
    audio_containers: list[Path]  # the ZIPs and wav folders used
    duplicate_audio: list[str]  # wav ids found more than once in this release's audio


def _walk(folder: Path, files: ReleaseFiles) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for name in sorted(filenames):
            if _ignored(name):
                continue
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if suffix == ".csv":
                files.csvs.append(path)
            elif suffix == ".zip":
                files.zips.append(path)
            elif suffix == ".wav":
                files.wavs.append(path)


def _match(root: Path) -> dict[str, ReleaseFiles]:
    keys = {name_key(r): r for r in RELEASES}
    found: dict[str, ReleaseFiles] = {}
    for entry in sorted(root.iterdir()):
        if _ignored(entry.name) or name_key(entry.name) not in keys:
            continue
        release = keys[name_key(entry.name)]
        files = found.setdefault(release, ReleaseFiles(release))
        if entry.is_dir():
            _walk(entry, files)
        elif entry.suffix.lower() == ".csv":
            files.csvs.append(entry)
        elif entry.suffix.lower() == ".zip":
            files.zips.append(entry)
    return found


def find_releases(root: Path) -> dict[str, ReleaseFiles]:
    """Apply the discovery rule; returns the releases found, in RELEASES order."""
    if not root.exists():
        raise UserError(f"--aihub {root}: no such folder")
    if not root.is_dir():
        raise UserError(f"--aihub {root}: not a folder (give the folder that holds the releases)")
    searched = root
    found = _match(root)
    for _ in range(MAX_WRAPPER_DEPTH):
        if found:
            break
        folders = [p for p in searched.iterdir() if p.is_dir() and not _ignored(p.name)]
        if len(folders) != 1:
            break
        searched = folders[0]
        found = _match(searched)
    if not found:
        listing = ", ".join(sorted(p.name for p in root.iterdir() if not _ignored(p.name))[:20])
        inside = f" (also looked inside {searched})" if searched != root else ""
        raise UserError(
            f"--aihub {root}: no AI Hub release found; expected {', '.join(RELEASES)} as CSV + ZIP "
            f"(e.g. 4차년도.csv and 4차년도.zip) or a folder per release; found: {listing or 'nothing'}{inside}"
        )
    for files in found.values():
        if not files.csvs:
            raise UserError(f"release {files.name}: audio found but no CSV under {searched}")
        if len(files.csvs) > 1:
            raise UserError(
                f"release {files.name}: {len(files.csvs)} CSVs, expected one: "
                + ", ".join(str(p) for p in files.csvs)
            )
    return {r: found[r] for r in RELEASES if r in found}


def decode_csv(path: Path) -> tuple[str, str]:
    """The CSV's text and the encoding that decoded it cleanly (see the module docstring)."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        attempts = ["utf-8-sig"]  # a BOM says UTF-8; falling back to cp949 would be a guess
    else:
        attempts = ["utf-8", "cp949"]
    failures = []
    for encoding in attempts:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            failures.append(f"{encoding} fails at byte {exc.start}")
    raise UserError(f"{path}: cannot decode as {' or '.join(attempts)} ({'; '.join(failures)}); "
                    "save it as cp949 or UTF-8")


def _header_map(path: Path, header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Column key -> cell index, and the unexpected cells; a missing column is an error."""
    expected = {_column_key(c): c for c in COLUMNS}
    positions: dict[str, int] = {}
    unexpected = []
    for index, cell in enumerate(header):
        key = _column_key(cell)
        if key in expected and key not in positions:
            positions[key] = index
        elif key:
            unexpected.append(cell.strip())
    missing = [name for key, name in expected.items() if key not in positions]
    if missing:
        hint = "; is this a dataset 263 CSV?" if len(missing) == len(COLUMNS) else ""
        raise UserError(
            f"{path}: wrong header: missing columns {missing}"
            + (f", unexpected columns {unexpected}" if unexpected else "") + hint
        )
    return positions, unexpected


def read_csv(path: Path, release: str) -> tuple[str, list[RawRow], list[tuple[int, str]], list[str]]:
    """(encoding, rows, malformed (line, wav_id), unexpected header cells) of one release CSV."""
    text, encoding = decode_csv(path)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise UserError(f"{path}: empty file, expected a header {list(COLUMNS)}")
    positions, unexpected = _header_map(path, header)
    width = len(header)

    def cell(cells: list[str], column: str) -> str:
        index = positions[_column_key(column)]
        return cells[index] if index < len(cells) else ""

    rows, malformed = [], []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        wav_id = unicodedata.normalize("NFC", cell(cells, "wav_id").strip())
        if wav_id.lower().endswith(".wav"):
            wav_id = wav_id[:-4]
        if any(c.strip() for c in cells[width:]):
            malformed.append((reader.line_num, wav_id))
            continue
        annotations = [
            (cell(cells, COLUMNS[3 + 2 * i]), cell(cells, COLUMNS[4 + 2 * i])) for i in range(ANNOTATORS)
        ]
        rows.append(RawRow(
            release=release, line=reader.line_num, wav_id=wav_id,
            text=cell(cells, "발화문").strip(), situation=cell(cells, "상황").strip(),
            annotations=annotations, age=cell(cells, "나이").strip(), gender=cell(cells, "성별").strip(),
        ))
    return encoding, rows, malformed, unexpected


def _wav_id(member_name: str) -> str | None:
    """The id of a ZIP member or file name, or None when it is not a wav worth reading."""
    parts = member_name.replace("\\", "/").split("/")
    if any(_ignored(p) for p in parts[:-1]) or _ignored(parts[-1]):
        return None
    name = unicodedata.normalize("NFC", parts[-1])
    if not name.lower().endswith(".wav") or len(name) <= 4:
        return None
    return name[:-4]


def index_audio(files: ReleaseFiles) -> tuple[dict[str, AudioSource], list[str]]:
    """wav_id -> source over the release's ZIPs then loose wavs; later duplicates are listed."""
    audio: dict[str, AudioSource] = {}
    duplicates: list[str] = []

    def add(wav_id: str, source: AudioSource) -> None:
        if wav_id in audio:
            duplicates.append(wav_id)
        else:
            audio[wav_id] = source

    for path in files.zips:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{path}: cannot read this ZIP ({exc}); download or copy it again") from exc
        for info in members:
            wav_id = None if info.is_dir() else _wav_id(info.filename)
            if wav_id:
                add(wav_id, AudioSource(path, info.filename, f"zip:{info.CRC:08x}:{info.file_size}"))
    for path in files.wavs:
        wav_id = _wav_id(path.name)
        if wav_id:
            stat = path.stat()
            add(wav_id, AudioSource(path, None, f"file:{stat.st_size}:{stat.st_mtime_ns}"))
    return audio, duplicates


def load_release(files: ReleaseFiles) -> Release:
    encoding, rows, malformed, unexpected = read_csv(files.csvs[0], files.name)
    audio, duplicates = index_audio(files)
    containers = list(files.zips) + sorted({p.parent for p in files.wavs})
    return Release(files.name, files.csvs[0], encoding, rows, malformed, unexpected,
                   audio, containers, duplicates)
