"""Metrics, calibration and reports for every trained model, side by side with the seed's numbers.

The seed reported accuracy and an "F1-score" without saying which average. Its numbers settle it:
its audio and KoELECTRA multimodal models score accuracy 0.3679 with F1 0.1979, and 0.1979 is
exactly the *weighted* F1 of always answering the majority class when that class is 36.79 % of the
test set (2p²/(1+p)); the macro F1 of that would be 0.13. So the seed's F1 is weighted F1, and
those two models predicted a single class. The summary compares the seed's F1 with our weighted
F1 and shows macro F1 as well, which is the metric models are selected on here (it does not
reward ignoring the small classes).

Calibration: expected calibration error (ECE) of the top label, 15 equal-width bins. A single
temperature is fitted on the validation split by minimising log loss; it is kept only when it
lowers validation ECE on at least MIN_CALIBRATION utterances (on fewer, a perfectly separated
validation set would drive it to zero), and the choice is recorded. Temperature never changes a
prediction's label.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.labels import LABELS, label_indices
from core.stacker import apply_temperature

ECE_BINS = 15
MIN_CALIBRATION = 100  # validation utterances needed before a fitted temperature is trusted
EPS = 1e-7

# The seed report's results (its "F1-score" is weighted F1, see the module docstring).
SEED_RESULTS: dict[str, dict[str, Any]] = {
    "text": {"model": "KLUE-RoBERTa", "accuracy": 0.70, "f1": 0.69},
    "audio": {"model": "ResNet (mel spectrogram)", "accuracy": 0.37, "f1": 0.24},
    "multimodal": {"model": "KLUE-RoBERTa embedding + 13 mel means, Conv1D", "accuracy": 0.61, "f1": 0.60},
    "stacking": {"model": "stack of the three", "accuracy": 0.61, "f1": 0.60},
}


def macro_f1(y: Sequence[str] | np.ndarray, scores: np.ndarray) -> float:
    """Macro-F1 of the arg-max of `scores` (probabilities or logits, (n, labels)) against `y`: the
    metric every model is selected and early-stopped on (it does not reward ignoring small classes)."""
    from sklearn.metrics import f1_score

    scores = np.asarray(scores)
    return float(f1_score(label_indices(y), scores.argmax(axis=1), labels=list(range(scores.shape[1])),
                          average="macro", zero_division=0))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises log loss on (y, proba)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        scaled = apply_temperature(proba, math.exp(log_t))
        return float(-np.mean(np.log(np.clip(scaled[np.arange(len(y)), y], EPS, 1.0))))

    result = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(result.x))


@dataclass
class Calibration:
    """A temperature fitted on validation, and whether it was kept (it lowered validation ECE)."""

    temperature: float
    val_ece_before: float
    val_ece_after: float
    applied: bool
    reason: str = ""

    @property
    def used_temperature(self) -> float:
        return self.temperature if self.applied else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "temperature": round(self.temperature, 4),
            "val_ece_before": round(self.val_ece_before, 4),
            "val_ece_after": round(self.val_ece_after, 4),
            "applied": self.applied,
            "reason": self.reason,
        }


def calibrate(y_val: np.ndarray, proba_val: np.ndarray) -> Calibration:
    y_val = label_indices(y_val)
    temperature = fit_temperature(y_val, proba_val)
    before = expected_calibration_error(y_val, proba_val)
    after = expected_calibration_error(y_val, apply_temperature(proba_val, temperature))
    if len(y_val) < MIN_CALIBRATION:
        return Calibration(temperature, before, after, False, f"only {len(y_val)} validation utterances (< {MIN_CALIBRATION})")
    if after >= before:
        return Calibration(temperature, before, after, False, "does not lower validation ECE")
    return Calibration(temperature, before, after, True, "lowers validation ECE")


def classification_metrics(y: Sequence[str] | np.ndarray, proba: np.ndarray, labels: Sequence[str] = LABELS) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1, confusion matrix, ECE, log loss."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    y = label_indices(y, labels)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y), len(labels)):
        raise ValueError(f"probabilities of shape {proba.shape} for {len(y)} labels over {len(labels)} classes")
    pred = proba.argmax(axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=classes, average="weighted", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(y, pred, labels=classes).tolist(),  # rows: true, columns: predicted
        "ece": expected_calibration_error(y, proba),
        "log_loss": float(log_loss(y, proba / proba.sum(axis=1, keepdims=True), labels=classes)),
    }


@dataclass
class ModelReport:
    """One model's results: validation and test metrics, calibration, and where it serves."""

    name: str
    role: str  # "text", "audio", "multimodal" or "stacking"
    kind: str
    val: dict[str, Any]
    test: dict[str, Any]
    calibration: Calibration | None = None
    test_calibrated: dict[str, Any] | None = None  # test metrics with the kept temperature
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "kind": self.kind,
            "val": self.val,
            "test": self.test,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "test_calibrated_ece": self.test_calibrated["ece"] if self.test_calibrated else None,
            "notes": self.notes,
        }


def evaluate_model(
    name: str, role: str, kind: str, y_val, proba_val: np.ndarray, y_test, proba_test: np.ndarray
) -> ModelReport:
    """Metrics on both splits, plus a validation-fitted temperature and its effect on test ECE."""
    calibration = calibrate(y_val, proba_val)
    report = ModelReport(
        name, role, kind, classification_metrics(y_val, proba_val), classification_metrics(y_test, proba_test), calibration
    )
    if calibration.applied:
        report.test_calibrated = classification_metrics(y_test, apply_temperature(proba_test, calibration.temperature))
    return report


def plot_confusion(metrics: dict[str, Any], title: str, path: Path, labels: Sequence[str] = LABELS) -> Path:
    """Counts of true (rows) against predicted (columns) labels, as a PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    counts = np.asarray(metrics["confusion"])
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=110)
    ConfusionMatrixDisplay(counts, display_labels=list(labels)).plot(ax=ax, cmap="Blues", values_format="d", colorbar=False)
    ax.set_title(f"{title}\nacc {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  (n={metrics['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(y, proba: np.ndarray, title: str, path: Path, temperature: float = 1.0) -> Path:
    """Top-label reliability diagram: accuracy against confidence per bin, before and after T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = label_indices(y)
    edges = np.linspace(0, 1, ECE_BINS + 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    curves = [(proba, "raw", "tab:red")]
    if temperature != 1.0:
        curves.append((apply_temperature(proba, temperature), f"T={temperature:.2f}", "tab:blue"))
    for p, name, color in curves:
        confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)
        xs = [confidence[which == b].mean() for b in range(ECE_BINS) if (which == b).any()]
        ys = [correct[which == b].mean() for b in range(ECE_BINS) if (which == b).any()]
        ax.plot(xs, ys, marker="o", color=color, label=f"{name} (ECE {expected_calibration_error(y, p):.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary_markdown(
    reports: Sequence[ModelReport],
    stack_decision: dict[str, Any] | None = None,
    skipped: dict[str, str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """One table, every model beside the seed's result for its role; then decisions and skips."""
    lines = [
        "# Training summary",
        "",
        "Test split unless marked. Models are selected on validation macro-F1; the test split is used only here.",
        "The seed's F1 is weighted F1 (see trainer/evaluate.py), so compare it with the *weighted F1* column.",
        "",
        "| model | role | val acc | val macro-F1 | test acc | test macro-F1 | test weighted-F1 | test ECE | temperature | seed acc / F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        seed = SEED_RESULTS.get(r.role)
        seed_cell = f"{seed['accuracy']:.2f} / {seed['f1']:.2f}" if seed else "–"
        ece = r.test["ece"]
        if r.calibration and r.calibration.applied and r.test_calibrated:
            ece_cell = f"{ece:.3f} → {r.test_calibrated['ece']:.3f}"
            t_cell = f"{r.calibration.temperature:.2f} (kept)"
        else:
            ece_cell = f"{ece:.3f}"
            t_cell = f"{r.calibration.temperature:.2f} (not kept)" if r.calibration else "–"
        lines.append(
            f"| {r.name} | {r.role} | {_f(r.val['accuracy'])} | {_f(r.val['macro_f1'])} | {_f(r.test['accuracy'])} | "
            f"{_f(r.test['macro_f1'])} | {_f(r.test['weighted_f1'])} | {ece_cell} | {t_cell} | {seed_cell} |"
        )
    for role, seed in SEED_RESULTS.items():
        if not any(r.role == role for r in reports):
            lines.append(f"| (not trained) | {role} | – | – | – | – | – | – | – | {seed['accuracy']:.2f} / {seed['f1']:.2f} |")
    if stack_decision:
        lines += ["", "## Stacking", "", f"- Decision: {stack_decision.get('summary', '')}"]
        for key in ("cv", "validation"):
            if key in stack_decision:
                lines.append(f"- {key}: `{json.dumps(stack_decision[key], ensure_ascii=False)}`")
        lines.append(
            "- The meta-learner is trained only on out-of-fold probabilities (each base model trained on the other "
            "folds predicts its held-out fold), never on a base model's predictions for its own training data; the "
            "seed's stack (0.61) fell below its own text model (0.70), the symptom of a meta-learner fitted on "
            "in-sample predictions."
        )
    if skipped:
        lines += ["", "## Not trained", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_reports(
    out: Path,
    reports: Sequence[ModelReport],
    probabilities: dict[str, dict[str, np.ndarray]],
    y_val,
    y_test,
    stack_decision: dict[str, Any] | None = None,
    skipped: dict[str, str] | None = None,
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json, summary.md and, per model, confusion and reliability PNGs (test split) under `out`.

    `probabilities[name]` holds that model's "val" and "test" probabilities.
    """
    out.mkdir(parents=True, exist_ok=True)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for r in reports:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in r.name)
        plot_confusion(r.test, f"{r.name} ({r.role}), test", plots / f"{safe}_confusion.png")
        temperature = r.calibration.used_temperature if r.calibration else 1.0
        plot_reliability(y_test, probabilities[r.name]["test"], f"{r.name}, test", plots / f"{safe}_reliability.png", temperature)
    metrics = {
        "models": {r.name: r.to_json() for r in reports},
        "seed": SEED_RESULTS,
        "stacking": stack_decision,
        "skipped": skipped or {},
        **(extra or {}),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(reports, stack_decision, skipped, notes), encoding="utf-8")
    return metrics
