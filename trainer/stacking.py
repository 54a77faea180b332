"""The stacker: a multinomial logistic regression over the base models' out-of-fold probabilities.

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

Features are the log-probabilities of each role, so the regression can weight a confident model
more than a hesitant one. Weights are saved as JSON (no pickle), and prediction is the softmax of
the saved coefficients, identical to scikit-learn's predict_proba.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from scipy.special import softmax

from trainer.errors import UserError
from trainer.evaluate import apply_temperature, label_indices
from trainer.labels import LABELS

SETTINGS_FILE = "stacker.json"
EPS = 1e-6
CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # an inner CV picks the regularisation by log loss
CV_FOLDS = 5


def _features(per_role: dict[str, np.ndarray], roles: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.log(np.clip(per_role[role], EPS, 1.0)) for role in roles], axis=1)


def _macro_f1(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, proba.argmax(axis=1), labels=list(range(len(LABELS))), average="macro", zero_division=0))



class Stacker:
    """Combines per-role probabilities; `mode` is "stack" (meta-learner) or "base" (one role passed through)."""

    kind: ClassVar[str] = "stacker"
    labels: tuple[str, ...] = LABELS

    def __init__(self, seed: int = 13):
        self.seed = seed
        self.roles: list[str] = []
        self.mode = "stack"
        self.base_role: str | None = None
        self.coef: np.ndarray | None = None  # (labels, labels * roles)
        self.intercept: np.ndarray | None = None
        self.C: float | None = None
        self.temperature = 1.0
        self.decision: dict[str, Any] = {}

    @classmethod
    def pass_through(cls, role: str, reason: str) -> "Stacker":
        """A stacker that serves one base model (nothing to combine); it still carries a temperature."""
        stacker = cls()
        stacker.roles, stacker.mode, stacker.base_role = [role], "base", role
        stacker.decision = {"mode": "base", "base_role": role, "summary": f"pass through {role} ({reason})"}
        return stacker

    def fit_from(self, per_role_oof: dict[str, np.ndarray], y: Sequence[str] | np.ndarray) -> "Stacker":
        """Fit on out-of-fold probabilities {role: (n, labels)} and decide between stack and best base."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
        from threadpoolctl import threadpool_limits

        if not per_role_oof:
            raise ValueError("the stacker needs at least one base model's out-of-fold probabilities")
        y = label_indices(y)
        self.roles = sorted(per_role_oof)
        for role in self.roles:
            p = per_role_oof[role]
            if p.shape != (len(y), len(LABELS)) or np.isnan(p).any():
                raise ValueError(f"out-of-fold probabilities of {role!r} must be a complete ({len(y)}, {len(LABELS)}) array")
        base_f1 = {role: _macro_f1(y, per_role_oof[role]) for role in self.roles}
        best = max(self.roles, key=lambda role: base_f1[role])
        X = _features(per_role_oof, self.roles)
        folds = min(CV_FOLDS, int(np.bincount(y).min()))
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        inner = StratifiedKFold(max(2, min(3, folds)), shuffle=True, random_state=self.seed)
        searcher = GridSearchCV(LogisticRegression(max_iter=2000), {"C": list(CS)}, scoring="neg_log_loss", cv=inner)
        with threadpool_limits(1):  # a few hundred tiny fits: BLAS threads only add contention
            stack_f1 = _macro_f1(y, cross_val_predict(searcher, X, y, cv=cv, method="predict_proba"))
            self.C = float(searcher.fit(X, y).best_params_["C"])
        final = searcher.best_estimator_
        self.coef, self.intercept = final.coef_.astype(np.float64), final.intercept_.astype(np.float64)
        cv_record = {"stack_macro_f1": round(stack_f1, 4), "base_macro_f1": {r: round(f, 4) for r, f in base_f1.items()},
                     "folds": folds, "C": self.C}
        if len(self.roles) > 1 and stack_f1 > base_f1[best]:
            self.mode, self.base_role = "stack", None
            summary = f"stack {self.roles} (CV macro-F1 {stack_f1:.3f} > best base {best} {base_f1[best]:.3f})"
        else:
            self.mode, self.base_role = "base", best
            why = "only one base model" if len(self.roles) == 1 else f"CV macro-F1 {stack_f1:.3f} <= {base_f1[best]:.3f}"
            summary = f"pass through {best} ({why})"
        self.decision = {"mode": self.mode, "base_role": self.base_role, "summary": summary, "cv": cv_record}
        return self

    def validate(self, per_role_val: dict[str, np.ndarray], y_val: Sequence[str] | np.ndarray) -> dict[str, Any]:
        """Fall back to the best base model if the stacker scores under it on validation; record it."""
        y_val = label_indices(y_val)
        own = _macro_f1(y_val, self.predict_proba_from(per_role_val))
        base = {role: _macro_f1(y_val, per_role_val[role]) for role in self.roles}
        best = max(self.roles, key=lambda role: base[role])
        record = {"stacker_macro_f1": round(own, 4), "base_macro_f1": {r: round(f, 4) for r, f in base.items()}}
        if own < base[best]:
            previous = self.decision.get("summary", "")
            self.mode, self.base_role = "base", best
            record["fallback"] = f"{own:.3f} < {best} {base[best]:.3f}: now passes {best} through"
            self.decision.update(mode="base", base_role=best,
                                 summary=f"pass through {best} (validation macro-F1 beat the stacker; CV had said: {previous})")
        self.decision["validation"] = record
        return record

    def predict_proba_from(self, per_role: dict[str, np.ndarray]) -> np.ndarray:
        """(n, labels) probabilities; NaN rows wherever one of the roles it needs is NaN or absent."""
        if not self.roles:
            raise RuntimeError("Stacker.predict_proba_from called before fit_from() or load()")
        needed = [self.base_role] if self.mode == "base" else self.roles
        n = len(next(iter(per_role.values()))) if per_role else 0
        out = np.full((n, len(LABELS)), np.nan)
        if any(role not in per_role for role in needed):
            return out
        rows = ~np.any([np.isnan(per_role[role]).any(axis=1) for role in needed], axis=0)
        if not rows.any():
            return out
        if self.mode == "base":
            proba = per_role[self.base_role][rows]
        else:
            proba = softmax(_features({r: per_role[r][rows] for r in self.roles}, self.roles) @ self.coef.T + self.intercept, axis=1)
        out[rows] = apply_temperature(proba, self.temperature)
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        if not self.roles:
            raise RuntimeError("Stacker.save called before fit_from() or pass_through()")
        settings = {
            "labels": list(LABELS),
            "roles": self.roles,
            "mode": self.mode,
            "base_role": self.base_role,
            "C": self.C,
            "temperature": self.temperature,
            "coef": None if self.coef is None else self.coef.tolist(),
            "intercept": None if self.intercept is None else self.intercept.tolist(),
            "decision": self.decision,
        }
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(settings, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return {k: settings[k] for k in ("roles", "mode", "base_role", "temperature", "decision")}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "Stacker":
        path = Path(folder) / SETTINGS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stacker = cls()
            stacker.roles, stacker.mode, stacker.base_role = list(data["roles"]), data["mode"], data["base_role"]
            stacker.C, stacker.temperature, stacker.decision = data["C"], float(data["temperature"]), data["decision"]
            if data["coef"] is not None:
                stacker.coef, stacker.intercept = np.asarray(data["coef"], float), np.asarray(data["intercept"], float)
        except FileNotFoundError:
            raise UserError(f"{path} is missing; copy the bundle again or retrain it") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is unreadable ({type(exc).__name__}: {exc}); retrain the bundle") from None
        if tuple(data.get("labels", ())) != LABELS:
            raise UserError(f"{path}: labels {data.get('labels')} differ from {list(LABELS)}; retrain the bundle")
        width = len(LABELS) * len(stacker.roles)
        shape = None if stacker.coef is None else stacker.coef.shape
        if stacker.mode not in ("stack", "base") or (stacker.mode == "stack" and shape != (len(LABELS), width)) or (
            stacker.mode == "base" and stacker.base_role not in stacker.roles
        ):
            raise UserError(f"{path}: inconsistent stacker (mode {stacker.mode!r}, coef {shape}); retrain the bundle")
        return stacker
