"""Where torch models run and in which precision: one resolver for training and inference alike.

Precision names are "auto", "fp32", "bf16" and "fp16". "auto" is bf16 on a GPU that has it,
fp16 on an older GPU, and fp32 on a CPU; bf16 also runs on a CPU (autocast), fp16 does not.
"""
from __future__ import annotations

import torch

from core.errors import UserError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def pick_device(device: str = "auto") -> torch.device:
    """"auto" = CUDA when torch sees a GPU, else CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return resolved


def resolve_precision(precision: str, device_type: str) -> str:
    """"fp32", "bf16" or "fp16" for `precision` on a device of this type ("cpu", "cuda")."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    cuda = device_type == "cuda"
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise UserError("precision 'fp16' needs a CUDA GPU; use 'auto', 'fp32' or 'bf16' on a CPU")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None = run in float32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def inference_autocast(precision: str, device: torch.device):
    """An autocast context for prediction in `precision` on a GPU; on a CPU prediction runs in
    float32 whatever the model was trained in (half-precision matmuls are slower there)."""
    dtype = autocast_dtype(resolve_precision(precision, device.type)) if device.type == "cuda" else None
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
