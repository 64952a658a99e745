"""Resident memory: measure it, and refuse work that would exceed a user-set limit
before the operating system kills the process.

- :func:`rss_bytes` / :func:`peak_rss_bytes`: current and peak resident set size of
  this process (Linux ``/proc`` and ``getrusage``; elsewhere the peak stands in for both).
- :func:`parse_size`: ``"8G"``, ``"512MiB"``, ``"1.5 GB"`` or a byte count.
- :func:`refuse_if_over`: raise :class:`MemoryLimitError` when an estimate plus what the
  process already holds passes a limit (used by ``dit3d evaluate pointclouds --max-memory``).
- :class:`MemoryGuard`: a Lightning callback that measures resident memory after the
  first training steps (when weights, optimiser state and the largest activations seen
  so far are allocated) and every ``check_every_n_steps`` after; over the limit, it stops
  the run with a message instead of letting the kernel's OOM killer end it silently.

Example:
    >>> parse_size("1.5GiB") == int(1.5 * 2**30), parse_size("512MB"), parse_size(1024)
    (True, 512000000, 1024)
"""
from __future__ import annotations

import os
import re
import resource
import sys

from lightning.pytorch import Callback

__all__ = ["MemoryGuard", "MemoryLimitError", "format_bytes", "parse_size", "peak_rss_bytes", "refuse_if_over",
           "rss_bytes"]

_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
          "T": 1000**4, "TB": 1000**4, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*$")


class MemoryLimitError(RuntimeError):
    """Work would exceed (or has exceeded) the user's memory limit; the message says how
    much was measured or estimated, the limit, and what to lower."""


def parse_size(size: str | int | float) -> int:
    """Bytes in a size such as ``"8G"`` / ``"8GB"`` (decimal), ``"8GiB"`` (binary) or a number.

    Raises:
        ValueError: not a positive size with a known unit.
    """
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        value, unit = float(size), ""
    else:
        match = _SIZE.match(str(size))
        if not match:
            raise ValueError(f"cannot read memory size {size!r}; write e.g. '8G', '8GiB', '512MB' or a byte count")
        value, unit = float(match.group(1)), match.group(2).upper()
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r} in memory size {size!r}; use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB")
    if not value > 0:
        raise ValueError(f"memory size must be positive, got {size!r}")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """``1536 * 2**20`` -> ``'1.50 GiB'``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def rss_bytes() -> int:
    """Current resident set size of this process (``/proc/self/statm``; the peak where
    ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def refuse_if_over(estimate: int, limit: int | str | None, what: str, fix: str) -> None:
    """Raise :class:`MemoryLimitError` if this process's resident memory plus ``estimate``
    bytes would pass ``limit`` (None: no limit).

    Args:
        estimate: extra bytes the work will allocate at its peak.
        limit: bytes, or a size string (:func:`parse_size`).
        what: the work, for the message (``"approx EMD of 662 x 662 clouds"``).
        fix: what the user can lower.
    """
    if limit is None:
        return
    limit = parse_size(limit)
    now = rss_bytes()
    if now + estimate > limit:
        raise MemoryLimitError(f"{what} would need about {format_bytes(now + estimate)} resident memory "
                               f"({format_bytes(now)} held now + {format_bytes(estimate)} estimated), over the "
                               f"limit of {format_bytes(limit)}; {fix}")


class MemoryGuard(Callback):
    """Stop training that passes a resident-memory limit, with a message, early.

    Checks after each of the first ``warmup_steps`` training batches, then every
    ``check_every_n_steps``: the first steps allocate the weights, the optimiser state and
    the activations of the batches seen, so a run that does not fit is refused within
    seconds, not hours. Over the limit it raises :class:`MemoryLimitError` (Lightning
    stops; checkpoints already written stay, so a run can resume with a smaller batch).
    :attr:`peak` holds the largest resident size seen at a check.

    Args:
        limit: bytes or a size string such as ``"8G"`` (:func:`parse_size`).
        check_every_n_steps: check interval after the warm-up.
        warmup_steps: steps checked one by one at the start.

    Example (a config's ``trainer.callbacks``):
        ``- class_path: dit3d.memory.MemoryGuard``
        ``  init_args: {limit: 8G}``
    """

    def __init__(self, limit: int | str, check_every_n_steps: int = 100, warmup_steps: int = 5) -> None:
        self.limit = parse_size(limit)
        if check_every_n_steps < 1 or warmup_steps < 0:
            raise ValueError(f"check_every_n_steps must be >= 1 and warmup_steps >= 0, got "
                             f"{check_every_n_steps} and {warmup_steps}")
        self.check_every_n_steps, self.warmup_steps = check_every_n_steps, warmup_steps
        self.peak = 0

    def check(self, step: int) -> None:
        now = rss_bytes()
        self.peak = max(self.peak, now)
        if now > self.limit:
            raise MemoryLimitError(f"training uses {format_bytes(now)} resident memory at step {step}, over the "
                                   f"limit of {format_bytes(self.limit)} (MemoryGuard); lower the batch size, the "
                                   f"model size or the number of data-loader workers, or raise the limit")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step <= self.warmup_steps or step % self.check_every_n_steps == 0:
            self.check(step)
