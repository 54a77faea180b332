"""Hugging Face models by hub name or local folder: where a file of one is, and whether it can be
had on this machine at all (these machines reach no model hub, so "not here" must be said, not
hung on).
"""
from __future__ import annotations

from pathlib import Path


def hub_file(source: str, filename: str) -> Path | None:
    """A file of a local folder or a hub repository (downloaded or cached), or None if it has none."""
    local = Path(source)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(found) if found else None


def unavailable_reason(source: str) -> str | None:
    """Why `source` cannot be fine-tuned here (None = it can): a local folder or a reachable/cached hub repo."""
    local = Path(source)
    if local.is_dir():
        return None if (local / "config.json").is_file() else f"{local} has no config.json: not a Hugging Face model folder"
    if local.is_absolute() or source.startswith((".", "~")):
        return f"{source} does not exist"
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return None
    try:
        get_hf_file_metadata(hf_hub_url(source, "config.json"), timeout=5)
    except Exception as exc:  # offline, unknown repo, gated: all mean "not here"
        return f"{source} is neither a local folder nor reachable on the Hugging Face hub ({type(exc).__name__}); " \
               "download it elsewhere and set its folder in the config"
    return None
