r"""Reuse of the blocks' attention and MLP outputs across sampling steps (FORA).

Consecutive denoising steps feed the trunk nearly the same tokens, so the costly branches
of each block (attention, MLP) change little from one step to the next (Selvaraju et al.
2024, "FORA: Fast-Forward Caching in Diffusion Transformer Acceleration", arXiv
2407.01425). With a refresh interval :math:`k`, every :math:`k`-th trunk call computes
all branches and stores them; the calls in between recompute only what is cheap and
depends on the new step, the adaLN modulation and the residual sums:

.. math::
    x_{l+1} = x_l + \alpha_1(c_t) \odot A_l^{(s)} + \alpha_2(c_t) \odot M_l^{(s)}

where :math:`A_l^{(s)}, M_l^{(s)}` are block :math:`l`'s attention and MLP outputs at the
last refresh :math:`s` and :math:`\alpha(c_t)` the gates of the current step. A reused
step costs the tokenizer, the embeddings and the final layer, a few percent of a full one.
This trades accuracy for speed: check sample quality at the chosen interval (for DiT-3D:
``python -m dit3d.bench dit3d`` times it; the model card of a checkpoint reports 1-NNA).

The cache holds one ``(B, T, D)`` tensor per branch and block; it is meant for sampling
under :func:`torch.no_grad` with one trunk call per step (classifier-free guidance runs
both halves in one call, so it qualifies).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

__all__ = ["BranchCache", "BranchFn", "branch_caching", "compute_branch"]

#: ``branch(k, compute, like)``: output of branch ``k`` of a block (computed or reused)
BranchFn = Callable[[int, Callable[[], Tensor], Tensor], Tensor]


class BranchCache:
    """Stores branch outputs on refresh calls and hands them back on the others.

    Args:
        interval: refresh every ``interval``-th trunk call (1: always compute, no reuse).

    Example:
        >>> cache = BranchCache(2)
        >>> [(cache.start_call(), cache.refreshing)[1] for _ in range(5)]
        [True, False, True, False, True]
    """

    def __init__(self, interval: int) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"cache interval must be an int >= 1 (1 = no reuse), got {interval!r}")
        self.interval = interval
        self.calls = 0
        self.refreshing = True
        self._store: dict[tuple[int, int], Tensor] = {}

    def start_call(self) -> None:
        """Mark the start of one trunk call (one sampling step)."""
        self.refreshing = self.calls % self.interval == 0
        self.calls += 1

    def branch(self, key: tuple[int, int], compute: Callable[[], Tensor], like: Tensor) -> Tensor:
        """``compute()`` on refresh calls (stored under ``key``), else the stored output.

        ``like`` is the branch's input: a stored tensor of another shape (a new batch) is
        recomputed rather than broadcast.
        """
        stored = self._store.get(key)
        if self.refreshing or stored is None or stored.shape != like.shape:
            stored = self._store[key] = compute()
        return stored

    def for_block(self, index: int) -> BranchFn:
        """The ``branch`` function for block ``index`` (keys ``(index, k)``)."""
        return lambda k, compute, like: self.branch((index, k), compute, like)


@contextmanager
def branch_caching(module: nn.Module, interval: int) -> Iterator[BranchCache | None]:
    """Within the block, every :class:`~dit3d.nn.DiTTrunk` inside ``module`` reuses its
    branch outputs between refreshes every ``interval`` calls; ``interval=1`` changes
    nothing and yields ``None``.

    Example:
        >>> import torch
        >>> from dit3d.nn import DiTTrunk
        >>> trunk = DiTTrunk(depth=1, hidden_size=12, num_heads=2)
        >>> with branch_caching(trunk, 3) as cache:
        ...     _ = [trunk(torch.randn(1, 4, 12), torch.randn(1, 12)) for _ in range(4)]
        >>> cache.calls, trunk.branch_cache is None
        (4, True)
    """
    cache = BranchCache(interval)  # validates interval
    trunks = [m for m in module.modules() if hasattr(m, "branch_cache")]
    if interval == 1 or not trunks:
        yield None
        return
    if len(trunks) > 1:
        raise ValueError(f"branch caching counts calls of one trunk, and {type(module).__name__} has {len(trunks)}; "
                         "pass the trunk to cache")
    trunks[0].branch_cache = cache
    try:
        yield cache
    finally:
        trunks[0].branch_cache = None


def compute_branch(index: int, compute: Callable[[], Tensor], like: Tensor) -> Tensor:
    """The uncached branch: always ``compute()`` (what blocks do outside caching)."""
    return compute()
