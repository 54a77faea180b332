"""The training loop for waveform -> logits networks (the ResNets), through `accelerate`.

One loop serves one GPU, several GPUs and the CPU with no code change: `Accelerator` moves the
network and batches to the right device, wraps the network in DistributedDataParallel and shards
the batches when the process was started by `accelerate launch` or `torchrun`, and runs the
forward pass under bf16/fp16 autocast when asked. Multi-GPU training is therefore

    accelerate launch --multi_gpu --num_processes 4 -m trainer train ...
    torchrun --nproc_per_node 4 -m trainer train ...

Every process fits the same model on its shard of each batch; validation runs the whole
validation set in every process (it is small) and process 0's macro-F1 is broadcast, so all
processes stop at the same epoch. BatchNorm is synchronised across processes when there are
several, so the replicas stay identical. Only process 0 should write the bundle (`trainer train`
checks `is_main_process()`).

Early stopping watches validation macro-F1 (the metric the seed reports and the one a
majority-class model scores badly on) and restores the best epoch's weights.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from core.audio_windows import random_crop
from core.device import resolve_precision
from trainer.augment import AugmentSettings, augment
from trainer.config import NetworkTraining

log = logging.getLogger(__name__)

_ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # accelerate's names


def split_validation(y: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / validation indices; plain random when the set is too small to stratify."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if fraction <= 0:
        return index, index[:0]
    counts = np.bincount(np.asarray(y))
    present = int((counts > 0).sum())
    n_val = math.ceil(fraction * len(y))
    can_stratify = counts[counts > 0].min() >= 2 and present <= n_val <= len(y) - present
    stratify = y if can_stratify else None
    train, val = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def audio_and_validation(samples: Sequence[Any], y: Sequence[str], eval_set: tuple[Sequence[Any], Sequence[str]] | None,
                         fraction: float, seed: int) -> tuple[list[np.ndarray], list[int], list[np.ndarray], list[int]]:
    """(train waves, train targets, validation waves, validation targets) for an audio fitter: the
    given eval_set for early stopping, else a stratified `fraction` of the samples held out (and then
    not trained on)."""
    from core.labels import label_indices
    from core.models import sample_audio

    waves, targets = sample_audio(samples), label_indices(y).tolist()
    if len(waves) != len(targets):
        raise ValueError(f"{len(waves)} samples but {len(targets)} labels")
    if eval_set is not None:
        return waves, targets, sample_audio(eval_set[0]), label_indices(eval_set[1]).tolist()
    train_idx, val_idx = split_validation(targets, fraction, seed)
    return ([waves[i] for i in train_idx], [targets[i] for i in train_idx],
            [waves[i] for i in val_idx], [targets[i] for i in val_idx])


def class_weights(y: Sequence[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (sklearn's "balanced"); a class absent from y keeps weight 1."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


class CropDataset(Dataset):
    """Training examples: a random fixed-length crop of an (optionally augmented) clip."""

    def __init__(self, waves: Sequence[np.ndarray], y: Sequence[int], size: int,
                 augmentation: AugmentSettings | None, sample_rate: int):
        self.waves, self.y, self.size = waves, y, size
        self.augmentation, self.sample_rate = augmentation, sample_rate

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, int]:
        # torch seeds every worker and every epoch differently from the main process's seed, so
        # drawing the numpy seed from torch keeps runs reproducible and epochs different.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        wave = self.waves[index]
        if self.augmentation is not None:
            wave = augment(wave, rng, self.augmentation, self.sample_rate)
        crop, length = random_crop(wave, self.size, rng)
        return crop, length, self.y[index]


def collate(batch: list[tuple[np.ndarray, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    waves, lengths, y = zip(*batch)
    return torch.from_numpy(np.stack(waves)), torch.tensor(lengths), torch.tensor(y)


def train_network(
    net: nn.Module,
    train: CropDataset,
    n_classes: int,
    settings: NetworkTraining,
    validate: Callable[[nn.Module], float] | None,
    *,
    seed: int = 13,
    device: str = "auto",
    precision: str = "auto",
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train `net(waves, lengths) -> logits` and return it (best epoch's weights, on its device).

    `validate(net)` scores the unwrapped network in eval mode (macro-F1); None trains all
    max_epochs and keeps the last weights. Returns the per-epoch history too. `device` is "auto",
    "cpu" or "cuda"; `precision` is resolved by core/device.py.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import broadcast_object_list, set_seed

    want_cpu = device == "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("training device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    device_type = "cpu" if want_cpu or not torch.cuda.is_available() else "cuda"
    # accelerate keeps one process-wide state and refuses a second Accelerator with another precision
    # or device; `trainer train` fits several models in one process (transformers' Trainer resets
    # the state the same way for each TrainingArguments).
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=want_cpu, mixed_precision=_ACCELERATE_PRECISION[resolve_precision(precision, device_type)])
    set_seed(seed)
    if accelerator.num_processes > 1:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)

    loader = DataLoader(train, batch_size=settings.batch_size, shuffle=True, drop_last=len(train) > settings.batch_size,
                        num_workers=settings.num_workers, collate_fn=collate,
                        persistent_workers=settings.num_workers > 0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
    # Not prepared: stepped once per optimizer step, over this process's own number of steps.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr,
                                                    total_steps=max(1, settings.max_epochs * len(loader)))
    weight = class_weights(train.y, n_classes).to(accelerator.device) if settings.balance_classes else None

    best_f1, best_state, stale, history = -math.inf, None, 0, []
    for epoch in range(settings.max_epochs):
        net.train()
        total, seen = 0.0, 0
        for waves, lengths, y in loader:
            logits = net(waves, lengths)
            loss = nn.functional.cross_entropy(logits.float(), y, weight=weight)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total, seen = total + loss.item() * len(y), seen + len(y)
        record = {"epoch": epoch + 1, "loss": total / max(seen, 1)}
        if validate is not None:
            model = accelerator.unwrap_model(net)
            model.eval()
            score = [validate(model)]
            broadcast_object_list(score, from_process=0)
            record["val_macro_f1"] = score[0]
            if score[0] > best_f1:
                best_f1, stale = score[0], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(record)
        log.info("epoch %d: %s", epoch + 1, record)
        if validate is not None and stale >= settings.patience:
            break

    model = accelerator.unwrap_model(net)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    accelerator.free_memory()
    return model, history
