r"""VDT's unified spatial-temporal masks: which tokens of a clip are given, per task.

A mask is a bool per token of the tubelet grid :math:`(F', H', W')` (time slots, rows,
columns; ``True`` = given clean, ``False`` = generated), flattened time-major as the
tokens. One network trained on a mixture of masks (Lu et al. 2023, Sec. 3.3) performs
every task by the mask chosen at sampling time. Per task, the evaluation mask
(:func:`task_mask`) and the training draws (:func:`random_task_mask`):

- ``unconditional``: nothing given.
- ``predict``: the first ``context`` time slots given (default :math:`\lfloor F'/2 \rfloor`);
  training: the first ``k``, :math:`k \sim U\{1..F'-1\}`.
- ``backward``: the last ``context`` slots (default :math:`\lfloor F'/2 \rfloor`); training:
  the last ``k``, :math:`k \sim U\{1..F'-1\}`.
- ``interpolate``: the first and the last ``context`` slots (default
  :math:`\max(1, \lfloor F'/4 \rfloor)`); training: half the time the first ``a`` and the
  last ``b`` (:math:`a, b \ge 1`, :math:`a + b < F'`), else the first, the last and each
  inner slot with probability 1/2 (at least one missing). Needs :math:`F' \ge 3`.
- ``complete`` (spatio-temporal completion): everything but a central box of half the
  rows and columns in every slot (video inpainting); training: everything but a random
  box of tokens (per axis an extent :math:`U\{1..g\}`, then a uniform offset).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["DEFAULT_TASK_WEIGHTS", "VIDEO_TASKS", "random_task_mask", "sample_task_masks", "task_mask"]

VIDEO_TASKS = ("unconditional", "predict", "backward", "interpolate", "complete")

#: the training mixture of :class:`~dit3d.models.VideoDiTModule` unless told otherwise
DEFAULT_TASK_WEIGHTS: dict[str, float] = {"unconditional": 0.2, "predict": 0.3, "backward": 0.1,
                                          "interpolate": 0.25, "complete": 0.15}


def check_task(task: str) -> str:
    if task not in VIDEO_TASKS:
        raise ValueError(f"unknown video task {task!r}; choose one of {VIDEO_TASKS}")
    return task


def _slots(given_slots: Tensor, grid: Sequence[int]) -> Tensor:
    """``(F',)`` bool per time slot -> ``(T,)`` bool per token."""
    _, h, w = grid
    return given_slots[:, None].expand(-1, h * w).reshape(-1)


def _box(grid: Sequence[int], start: Sequence[int], size: Sequence[int]) -> Tensor:
    """``(T,)`` bool: True outside the box ``[start, start + size)`` of the token grid."""
    inside = torch.ones(tuple(grid), dtype=torch.bool)
    for axis, (s, n) in enumerate(zip(start, size)):
        idx = torch.arange(grid[axis])
        shape = [1, 1, 1]
        shape[axis] = grid[axis]
        inside &= ((idx >= s) & (idx < s + n)).reshape(shape)
    return ~inside.reshape(-1)


def task_mask(task: str, grid: Sequence[int], context: int | None = None) -> Tensor:
    """The evaluation mask of ``task`` (see the module table): ``True`` = given token.

    Args:
        task: one of :data:`VIDEO_TASKS`.
        grid: token grid ``(F', H', W')``.
        context: given time slots for ``predict``/``backward`` (at each end for
            ``interpolate``); ``None`` for the default. Not used by the other tasks.

    Shapes:
        -> ``(F' H' W',)`` bool

    Example:
        >>> task_mask("predict", (4, 1, 2)).tolist()
        [True, True, True, True, False, False, False, False]
        >>> task_mask("interpolate", (4, 1, 1)).tolist()
        [True, False, False, True]
    """
    check_task(task)
    f, h, w = (int(g) for g in grid)
    slots = torch.zeros(f, dtype=torch.bool)
    if task in ("unconditional", "complete"):
        if context is not None:
            raise ValueError(f"context (given time slots) does not apply to task {task!r}")
        if task == "unconditional":
            return _slots(slots, grid)
        return _box(grid, (0, h // 4, w // 4), (f, max(1, h // 2), max(1, w // 2)))
    ends = 2 if task == "interpolate" else 1
    if context is None:
        context = max(1, f // 4) if task == "interpolate" else max(1, f // 2)
    if isinstance(context, bool) or not isinstance(context, int) or context < 1 or ends * context >= f:
        raise ValueError(f"task {task!r} on {f} time slots needs an int context with 1 <= {ends} * context < {f} "
                         f"(something given, something generated), got {context!r}")
    if task in ("predict", "interpolate"):
        slots[:context] = True
    if task in ("backward", "interpolate"):
        slots[f - context:] = True
    return _slots(slots, grid)


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def random_task_mask(task: str, grid: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """One training mask of ``task`` (see the module table).

    Shapes:
        -> ``(F' H' W',)`` bool
    """
    check_task(task)
    f, h, w = (int(g) for g in grid)
    slots = torch.zeros(f, dtype=torch.bool)
    if task != "unconditional" and task != "complete" and f < (3 if task == "interpolate" else 2):
        raise ValueError(f"task {task!r} needs at least {3 if task == 'interpolate' else 2} time slots, the grid "
                         f"{tuple(grid)} has {f}; use more frames or a smaller time_patch, or drop the task")
    if task == "unconditional":
        pass
    elif task in ("predict", "backward"):
        k = _randint(1, f - 1, generator)
        slots = torch.arange(f) < k if task == "predict" else torch.arange(f) >= f - k
    elif task == "interpolate":
        if _randint(0, 1, generator):
            a = _randint(1, f - 2, generator)
            b = _randint(1, f - 1 - a, generator)
            slots[:a], slots[f - b:] = True, True
        else:
            inner = torch.rand(f - 2, generator=generator) < 0.5
            if inner.all():
                inner[_randint(0, f - 3, generator)] = False
            slots = torch.cat([torch.ones(1, dtype=torch.bool), inner, torch.ones(1, dtype=torch.bool)])
    else:  # complete
        size = [_randint(1, g, generator) for g in (f, h, w)]
        start = [_randint(0, g - n, generator) for g, n in zip((f, h, w), size)]
        return _box(grid, start, size)
    return _slots(slots, grid)


def sample_task_masks(batch: int, grid: Sequence[int], weights: Mapping[str, float] | None = None,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A task per clip, drawn with probabilities proportional to ``weights``, and its mask.

    Args:
        batch: clips ``B``.
        grid: token grid ``(F', H', W')``.
        weights: task -> weight (default :data:`DEFAULT_TASK_WEIGHTS`); zero-weight
            tasks are never drawn.
        generator: random generator (``None``: torch's global one).

    Shapes:
        -> given ``(B, T)`` bool, task ``(B,)`` long (indices into :data:`VIDEO_TASKS`)
    """
    probs = task_probabilities(weights)
    task = torch.multinomial(probs, batch, replacement=True, generator=generator)  # (B,)
    given = torch.stack([random_task_mask(VIDEO_TASKS[i], grid, generator) for i in task.tolist()])
    return given.reshape(batch, -1), task


def task_probabilities(weights: Mapping[str, float] | None) -> Tensor:
    """``(len(VIDEO_TASKS),)`` probabilities from task weights, checked."""
    weights = dict(DEFAULT_TASK_WEIGHTS if weights is None else weights)
    for task in weights:
        check_task(task)
    w = torch.tensor([float(weights.get(t, 0.0)) for t in VIDEO_TASKS], dtype=torch.float64)
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"task weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    return w / w.sum()
