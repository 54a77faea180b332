"""Fitting the stacker (core/stacker.py) on out-of-fold probabilities, and the two guards that keep
the stack from scoring under its best base model.

Why out-of-fold: a base model's probabilities on its own training rows are overconfident and
mostly right, so a meta-learner fitted on them learns to trust whichever model memorised best and
then scores under that model on new data (the seed's stack, 0.61, under its text model, 0.70).
Here every training row's base probabilities come from a model that never saw that row (k folds
from splits.json), the meta-learner is fitted on those, and the bundle's base models are refitted
on all of train afterwards.

Two guards keep the stack from ever being worse than using one model:
1. cross-validation on the out-of-fold table: if the meta-learner's CV macro-F1 does not beat the
   best single base model's out-of-fold macro-F1, the stacker passes that model's probabilities
   through instead (mode "base");
2. validation: `validate()` compares the stacker's output with every base model on the
   validation split and falls back to the best base model when the stack scores under it.
Both decisions are recorded in `decision` and end up in bundle.json and the report.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.labels import LABELS, label_indices
from core.stacker import Stacker, features
from trainer.evaluate import macro_f1

CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # an inner CV picks the regularisation by log loss
CV_FOLDS = 5


def fit_stacker(per_role_oof: dict[str, np.ndarray], y: Sequence[str] | np.ndarray, seed: int = 13) -> Stacker:
    """Fit on out-of-fold probabilities {role: (n, labels)} and decide between stack and best base."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    if not per_role_oof:
        raise ValueError("the stacker needs at least one base model's out-of-fold probabilities")
    y = label_indices(y)
    stacker = Stacker()
    stacker.roles = sorted(per_role_oof)
    for role in stacker.roles:
        p = per_role_oof[role]
        if p.shape != (len(y), len(LABELS)) or np.isnan(p).any():
            raise ValueError(f"out-of-fold probabilities of {role!r} must be a complete ({len(y)}, {len(LABELS)}) array")
    base_f1 = {role: macro_f1(y, per_role_oof[role]) for role in stacker.roles}
    best = max(stacker.roles, key=lambda role: base_f1[role])
    X = features(per_role_oof, stacker.roles)
    folds = min(CV_FOLDS, int(np.bincount(y).min()))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    inner = StratifiedKFold(max(2, min(3, folds)), shuffle=True, random_state=seed)
    searcher = GridSearchCV(LogisticRegression(max_iter=2000), {"C": list(CS)}, scoring="neg_log_loss", cv=inner)
    with threadpool_limits(1):  # a few hundred tiny fits: BLAS threads only add contention
        stack_f1 = macro_f1(y, cross_val_predict(searcher, X, y, cv=cv, method="predict_proba"))
        stacker.C = float(searcher.fit(X, y).best_params_["C"])
    final = searcher.best_estimator_
    stacker.coef, stacker.intercept = final.coef_.astype(np.float64), final.intercept_.astype(np.float64)
    cv_record = {"stack_macro_f1": round(stack_f1, 4), "base_macro_f1": {r: round(f, 4) for r, f in base_f1.items()},
                 "folds": folds, "C": stacker.C}
    if len(stacker.roles) > 1 and stack_f1 > base_f1[best]:
        stacker.mode, stacker.base_role = "stack", None
        summary = f"stack {stacker.roles} (CV macro-F1 {stack_f1:.3f} > best base {best} {base_f1[best]:.3f})"
    else:
        stacker.mode, stacker.base_role = "base", best
        why = "only one base model" if len(stacker.roles) == 1 else f"CV macro-F1 {stack_f1:.3f} <= {base_f1[best]:.3f}"
        summary = f"pass through {best} ({why})"
    stacker.decision = {"mode": stacker.mode, "base_role": stacker.base_role, "summary": summary, "cv": cv_record}
    return stacker


def validate(stacker: Stacker, per_role_val: dict[str, np.ndarray], y_val: Sequence[str] | np.ndarray) -> dict[str, Any]:
    """Fall back to the best base model if the stacker scores under it on validation; record it."""
    y_val = label_indices(y_val)
    own = macro_f1(y_val, stacker.predict_proba_from(per_role_val))
    base = {role: macro_f1(y_val, per_role_val[role]) for role in stacker.roles}
    best = max(stacker.roles, key=lambda role: base[role])
    record = {"stacker_macro_f1": round(own, 4), "base_macro_f1": {r: round(f, 4) for r, f in base.items()}}
    if own < base[best]:
        previous = stacker.decision.get("summary", "")
        stacker.mode, stacker.base_role = "base", best
        record["fallback"] = f"{own:.3f} < {best} {base[best]:.3f}: now passes {best} through"
        stacker.decision.update(mode="base", base_role=best,
                             summary=f"pass through {best} (validation macro-F1 beat the stacker; CV had said: {previous})")
    stacker.decision["validation"] = record
    return record
