"""The stacker: a multinomial logistic regression over the base models' out-of-fold probabilities
(fitted by trainer/stacking.py, which also says why out-of-fold and what guards the stack).

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

from core.errors import UserError
from core.labels import LABELS

SETTINGS_FILE = "stacker.json"
EPS = 1e-6
TEMPERATURE_EPS = 1e-7


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax(log p / T): T > 1 softens, T < 1 sharpens, the argmax never changes."""
    if temperature == 1.0:
        return proba
    logits = np.log(np.clip(proba, TEMPERATURE_EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def features(per_role: dict[str, np.ndarray], roles: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.log(np.clip(per_role[role], EPS, 1.0)) for role in roles], axis=1)


class Stacker:
    """Combines per-role probabilities; `mode` is "stack" (meta-learner) or "base" (one role passed through)."""

    kind: ClassVar[str] = "stacker"
    labels: tuple[str, ...] = LABELS

    def __init__(self) -> None:
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

    def predict_proba_from(self, per_role: dict[str, np.ndarray]) -> np.ndarray:
        """(n, labels) probabilities; NaN rows wherever one of the roles it needs is NaN or absent."""
        if not self.roles:
            raise RuntimeError("Stacker.predict_proba_from called on a stacker that was neither fitted nor loaded")
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
            proba = softmax(features({r: per_role[r][rows] for r in self.roles}, self.roles) @ self.coef.T + self.intercept, axis=1)
        out[rows] = apply_temperature(proba, self.temperature)
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        if not self.roles:
            raise RuntimeError("Stacker.save called on a stacker that was neither fitted nor made pass-through")
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
