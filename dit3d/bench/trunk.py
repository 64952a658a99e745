"""``python -m dit3d.bench trunk``: train-step time and model FLOP utilisation of DiT-S.

Two workloads: 64 QM9-like sequences of 18-29 tokens (padded, key-padding mask) and
8 DiT-3D-like sequences of 512 tokens (an 8x8x8 grid; global attention, and the paper's
window layout as a side-by-side variant). A train step is forward, masked MSE, backward
and AdamW. MFU = FLOPs counted by torch's FlopCounterMode for one step divided by the
step time and by the fp32 matmul peak measured in the same run.
"""
from __future__ import annotations

from typing import Any

import torch

from dit3d.bench.timing import count_flops, matmul_peak_gflops, median_time
from dit3d.nn import build_trunk, preset_config


def qm9_like_batch(batch: int = 64, low: int = 18, high: int = 29, width: int = 384, seed: int = 0):
    """Random tokens with QM9-like lengths (uniform in [low, high]) padded to ``high``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (batch,), generator=g)
    mask = torch.arange(high)[None] < lengths[:, None]  # (B, T)
    x = torch.randn(batch, high, width, generator=g)
    return x, torch.randn(batch, width, generator=g), mask


def make_step(trunk, x, c, mask, grid):
    """A train-step closure for ``trunk``: forward, masked MSE to a fixed random target, backward, AdamW."""
    opt = torch.optim.AdamW(trunk.parameters(), lr=1e-4, fused=True)  # one kernel, not ~10 passes
    target = torch.randn(*x.shape[:2], trunk.out_dim)
    weight = (mask if mask is not None else torch.ones(x.shape[:2], dtype=torch.bool)).float()[..., None]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        y = trunk(x, c, mask, grid)  # (B, T, D)
        loss = ((y - target).square() * weight).sum() / (weight.sum() * y.shape[-1])
        loss.backward()
        opt.step()

    return step


def measure(preset: str, x, c, mask, grid, repeats: int, **trunk_kw: Any) -> dict[str, float]:
    """Median seconds, tokens per second and counted GFLOPs of one train step of a fresh ``preset`` trunk."""
    torch.manual_seed(0)
    trunk = build_trunk(preset, check_inputs=False, **trunk_kw)
    step = make_step(trunk, x, c, mask, grid)
    flops = count_flops(step)
    seconds = median_time(step, repeats)
    tokens = int(mask.sum()) if mask is not None else x.shape[0] * x.shape[1]
    return {"step_s": seconds, "tokens_per_s": tokens / seconds, "gflop_per_step": flops / 1e9}


def run(quick: bool = False, preset: str = "DiT-S") -> dict[str, Any]:
    """Time DiT-S train steps on QM9-like and 512-token batches (global, window) and MFU; returns the JSON record."""
    repeats = 2 if quick else 5
    cfg = preset_config(preset)
    width = cfg["hidden_size"]
    peak = matmul_peak_gflops()
    qm9 = measure(preset, *qm9_like_batch(width=width), grid=None, repeats=repeats)
    x512 = (torch.randn(8, 512, width), torch.randn(8, width), None)
    full = measure(preset, *x512, grid=(8, 8, 8), repeats=repeats)
    win = measure(preset, *x512, grid=(8, 8, 8), repeats=repeats,
                  window_size=(4, 4, 4), window_blocks=tuple(range(0, cfg["depth"], 3)))  # DiT-3D: 0, 3, 6, 9
    peak = max(peak, matmul_peak_gflops())  # re-measure: the machine may have sped up since
    mfu = lambda r: r["gflop_per_step"] / r["step_s"] / peak  # noqa: E731
    return {
        "preset": preset,
        "peak_gflops": round(peak, 1),
        "step_s_qm9": round(qm9["step_s"], 4),
        "tokens_per_s_qm9": round(qm9["tokens_per_s"]),
        "mfu_qm9": round(mfu(qm9), 3),
        "step_s_512": round(full["step_s"], 4),
        "tokens_per_s_512": round(full["tokens_per_s"]),
        "mfu_512": round(mfu(full), 3),
        "step_s_512_window": round(win["step_s"], 4),
        "mfu_512_window": round(mfu(win), 3),
        "gflop_per_step_qm9": round(qm9["gflop_per_step"], 1),
        "gflop_per_step_512": round(full["gflop_per_step"], 1),
        "qm9_padding_fraction": round(1 - qm9_like_batch()[2].float().mean().item(), 3),
    }
