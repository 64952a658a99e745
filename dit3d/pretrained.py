"""Weights + config on disk: ``config.json`` and ``model.safetensors`` in one folder.

Loading never unpickles code: the config is JSON naming a registered kind, the weights
are safetensors. Folders are written to a temporary sibling and renamed into place, so
an interrupted save never leaves a half-written model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dit3d.fileio import atomic_directory

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"

#: checkpoints shipped in the repository's ``data/`` folder, by name (re-exported by :mod:`dit3d.api`)
SHIPPED = {"adit-qm9-cpu": "adit_qm9_cpu", "adit-joint-cpu": "adit_joint_cpu", "dit3d-chair-cpu": "dit3d_chair_cpu",
           "digits-dit-cpu": "digits_dit_cpu", "video-digits-cpu": "video_digits_cpu",
           "video-digits-cond-cpu": "video_digits_cond_cpu"}


class PretrainedError(ValueError):
    """A pretrained folder is missing, incomplete, of the wrong kind or inconsistent."""


def resolve_pretrained(path_or_name: str | os.PathLike) -> Path:
    """A folder path, or the name of a checkpoint shipped in ``data/`` (:data:`SHIPPED`)."""
    path = Path(path_or_name)
    if path.is_dir():
        return path
    if str(path_or_name) in SHIPPED:
        shipped = Path(__file__).resolve().parents[1] / "data" / SHIPPED[str(path_or_name)]
        if shipped.is_dir():
            return shipped
        raise PretrainedError(f"shipped checkpoint {path_or_name!r} is not at {shipped}: shipped checkpoints "
                              "live in the source repository's data/ folder (install with pip install -e .)")
    hint = ("; a Lightning .ckpt must be exported first (`dit3d export DOMAIN CKPT -o DIR`)"
            if path.is_file() and path.suffix == ".ckpt" else "")
    raise PretrainedError(f"{path_or_name}: neither a pretrained folder nor a shipped name ({sorted(SHIPPED)}){hint}")


def _umask_file_permissions(directory: Path) -> None:
    """Give every file in ``directory`` the permissions a plain ``open`` would have had:
    safetensors writes its file 0o600, and a shared checkpoint should be readable by others."""
    umask = os.umask(0)
    os.umask(umask)
    for f in directory.iterdir():
        os.chmod(f, 0o666 & ~umask)


def save_pretrained(directory: str | os.PathLike, kind: str, config: dict[str, Any],
                    state_dict: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` (with ``kind``) and ``model.safetensors`` atomically.

    The folder is built beside its destination and renamed into place. An existing
    destination is replaced only if it is itself a pretrained folder (it holds a
    ``config.json`` with a ``kind``); anything else is refused, never deleted.
    """
    directory = Path(directory).resolve()
    if directory.exists() and not _is_pretrained(directory):
        raise PretrainedError(f"{directory} exists and is not a pretrained folder; refusing to overwrite it "
                              "(choose a new folder name)")
    with atomic_directory(directory, overwrite=True) as tmp:  # the old model stays whole until the swap
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps({"kind": kind, **config}, indent=2, sort_keys=True))
        _umask_file_permissions(tmp)
    return directory


def _is_pretrained(directory: Path) -> bool:
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return directory.is_dir() and isinstance(config, dict) and "kind" in config


def load_pretrained(directory: str | os.PathLike, kind: str | tuple[str, ...] | None = None
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a folder written by :func:`save_pretrained`; check its ``kind`` (one, or any of
    a tuple) if given."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PretrainedError(f"{directory}: no such pretrained folder (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise PretrainedError(f"{directory}: missing {name}; was the save interrupted?")
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise PretrainedError(f"{directory / CONFIG_NAME}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{directory / CONFIG_NAME}: expected a JSON object with a 'kind', got "
                              f"{type(config).__name__}")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and config.get("kind") not in kinds:
        expected = repr(kinds[0]) if len(kinds) == 1 else "one of " + ", ".join(map(repr, kinds))
        raise PretrainedError(f"{directory}: holds a {config.get('kind')!r} model, expected {expected}")
    try:
        weights = load_file(str(directory / WEIGHTS_NAME))
    except Exception as e:  # safetensors raises its own error types on truncation
        raise PretrainedError(f"{directory / WEIGHTS_NAME}: unreadable safetensors file ({e})") from None
    return config, weights


def load_state_strict(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the folder and keys."""
    try:
        result = module.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise PretrainedError(f"{where}: weights do not match the config ({str(e).splitlines()[-1].strip()})") from None
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedError(f"{where}: weights do not match the config (missing {result.missing_keys[:5]}, "
                              f"unexpected {result.unexpected_keys[:5]})")
