"""Reading Lightning ``.ckpt`` files without unpickling code.

``dit3d fit`` writes Lightning checkpoints; every loader of the package (the generators'
``from_checkpoint``, ``dit3d export``, ADiT's stage-1 autoencoder and stage-2 module) reads
them here with ``torch.load(weights_only=True)``: tensors and plain hyper-parameters only,
so a checkpoint from elsewhere cannot run code on load.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["first_line", "load_lightning_checkpoint", "module_from_checkpoint", "read_lightning_checkpoint"]

_M = TypeVar("_M", bound=nn.Module)


def first_line(e: Exception) -> str:
    """``"ErrorType: first line of the message"``, cut to 200 characters, for error messages."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__


def read_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of a Lightning ``.ckpt`` (``state_dict``, ``hyper_parameters``, ...).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable (truncated, not a checkpoint, pickled code) or without a ``state_dict``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch raise assorted types
        raise ValueError(f"{path}: cannot read it as a Lightning checkpoint ({first_line(e)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def load_lightning_checkpoint(path: str | os.PathLike, module_cls: type[_M]) -> tuple[_M, dict[str, Any]]:
    """Rebuild a trained ``module_cls`` from a Lightning ``.ckpt``: ``module_cls(**hyper_parameters)``
    (names starting with ``_`` left out), then its ``state_dict`` loaded strictly.

    Args:
        path: ``.ckpt`` written by ``dit3d fit`` (or ``Trainer.save_checkpoint``).
        module_cls: the Lightning module class the checkpoint is expected to hold.

    Returns:
        ``(module in eval mode, the whole checkpoint dict)``; the latter carries what data
        modules and callbacks saved next to the weights.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, not a Lightning checkpoint, or not one of ``module_cls``.

    Example:
        >>> from dit3d.models import ImageDiTModule
        >>> load_lightning_checkpoint("missing.ckpt", ImageDiTModule)
        Traceback (most recent call last):
        ...
        FileNotFoundError: missing.ckpt: no such checkpoint
    """
    ckpt = read_lightning_checkpoint(path)
    return module_from_checkpoint(ckpt, module_cls, str(path)), ckpt


def module_from_checkpoint(ckpt: dict[str, Any], module_cls: type[_M], where: str) -> _M:
    """``module_cls(**hyper_parameters)`` with the ``state_dict`` of a checkpoint dict already
    read (:func:`read_lightning_checkpoint`), in eval mode; a ``ValueError`` naming ``where``
    when it is not one of ``module_cls``."""
    hp = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    try:
        module = module_cls(**hp)
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        name = module_cls.__name__
        article = "an" if name[:1].upper() in ("A", "E", "I", "O", "U") else "a"
        raise ValueError(f"{where}: not {article} {name} checkpoint ({first_line(e)})") from None
    return module.eval()
