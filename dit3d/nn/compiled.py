"""Compiling a trunk network for faster sampling or training (``torch.compile``, TorchInductor).

Sampling calls one network with the same shapes tens to thousands of times, so what
TorchInductor does once pays every step: it fuses the elementwise work between the large
matmuls (norms, adaLN modulation, GELU, gates, and the per-token quantization and
rescaling of :mod:`dit3d.nn.quantize`) into single passes over memory. On two CPU threads
DiT-3D-S/4 samples 8 clouds in int8 about 1.3x faster compiled (``python -m dit3d.bench
dit3d``: 70.1 -> 52.4 s for DDIM 100; README's Benchmarks). Training steps gain little
or nothing on that CPU, where the matmuls dominate them (1.03-1.08x in one-off timings of
DiT-3D-S/4 and the video model; 0.91x in one ``bench dit3d`` run), after a longer first
step that also compiles the backward; :func:`compile_for_training` is what the Lightning
modules' ``compile_model`` option calls.

The first call compiles (on the CPU it writes and builds C++ kernels: about 15-45 s for
DiT-3D-S/4 on two cores, a few seconds once Inductor's on-disk cache holds the kernels);
later calls with the same shapes reuse it, and a new batch size compiles once more.
Compiling in place (``nn.Module.compile``) keeps parameter names, so the network still
saves and loads as before.
"""
from __future__ import annotations

import os
import shutil
from typing import Literal

import torch
from torch import nn

__all__ = ["compile_for_sampling", "compile_for_training", "cpp_compiler", "is_compiled"]

#: C++ compilers TorchInductor's CPU backend can use, in the order it looks for them
CPP_COMPILERS = ("c++", "g++", "clang++")


def cpp_compiler() -> str | None:
    """Path of the C++ compiler Inductor would build CPU kernels with (``$CXX`` first), or ``None``."""
    candidates = ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(CPP_COMPILERS)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` was compiled in place (:func:`compile_for_sampling`, ``nn.Module.compile``)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def compile_for_sampling(model: nn.Module) -> nn.Module:
    """Compile ``model`` in place with ``torch.compile`` (TorchInductor) for inference; returns it.

    Call it after moving the model to its device and after any
    :func:`~dit3d.nn.quantize.quantize_int8`. Outputs match the eager model to float
    rounding (fused kernels sum in another order). A second call changes nothing.

    Raises:
        ValueError: ``model`` is in training mode (call ``model.eval()`` first: this is for sampling).
        RuntimeError: it lives on the CPU and no C++ compiler is installed (Inductor builds
            its CPU kernels with one): install g++ or clang++, or sample without compiling.

    Example:
        >>> from dit3d.nn import DiTBlock
        >>> block = compile_for_sampling(DiTBlock(dim=32, num_heads=4).eval())  # doctest: +SKIP
        >>> is_compiled(block)  # doctest: +SKIP
        True
    """
    if model.training:
        raise ValueError("compile_for_sampling prepares a model for sampling; call model.eval() first")
    return _compile_in_place(model, "sample")


def compile_for_training(model: nn.Module) -> nn.Module:
    """Compile ``model`` in place with ``torch.compile`` (TorchInductor) for training; returns it.

    TorchInductor compiles the forward and, through AOTAutograd, the backward on the first
    training step (tens of seconds on a CPU); the gradients match the eager model's to
    float rounding. The first call in eval mode or without gradients (Lightning's
    validation runs under ``torch.inference_mode``) compiles once more. Parameter names are
    unchanged, so optimisers, EMA copies and checkpoints see the same tensors. A second
    call changes nothing.

    Raises:
        RuntimeError: it lives on the CPU and no C++ compiler is installed: install g++ or
            clang++, or train without compiling.

    Example:
        >>> from dit3d.nn import DiTBlock
        >>> block = compile_for_training(DiTBlock(dim=32, num_heads=4))  # doctest: +SKIP
        >>> is_compiled(block)  # doctest: +SKIP
        True
    """
    return _compile_in_place(model, "train")


def _compile_in_place(model: nn.Module, purpose: Literal["sample", "train"]) -> nn.Module:
    """``model.compile()`` unless it is compiled already; on the CPU, first check for a C++
    compiler (``purpose`` words the error)."""
    if is_compiled(model):
        return model
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    if device.type == "cpu" and cpp_compiler() is None:
        raise RuntimeError("torch.compile builds CPU kernels with a C++ compiler and none was found (looked for "
                           f"$CXX, {', '.join(CPP_COMPILERS)}); install g++ or clang++, or {purpose} without compiling")
    model.compile()
    return model
