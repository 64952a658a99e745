"""``python -m dit3d.bench gelu``: DiT's tanh-approximated GELU against the exact one, side by side.

The trunk's MLPs use GELU with the tanh approximation (DiT's choice, the default
``mlp_act="gelu_tanh"``); ``trunk_options: {mlp_act: gelu}`` switches a new model to the
exact (erf) GELU, at most 4.7e-4 away. On the CPU build of torch the tanh variant's
kernels are several times slower. Keys (seconds unless named ``_ms``; ``*_ratio`` is
tanh over exact, above 1 where exact is faster):

- ``op_fwd_ms_*``, ``op_fwd_bwd_ms_*``: the activation alone on a ``(4096, 4 * D)``
  float32 tensor, the MLP hidden layer of DiT-3D-S/4 at batch 8 (``D = 384``).
- ``train_step_s_*``: a DiT-3D ``preset`` train step (forward, loss, backward, AdamW; no EMA
  update) at ``batch`` x ``num_points`` random points, on ``python -m dit3d.bench dit3d``'s network.
- ``denoise_step_int8_s_*``: one int8 denoising step of the same network
  (:mod:`dit3d.nn.quantize`), the step the fast point-cloud sampler repeats.

The two variants alternate within each repeat, so both see the same machine load.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

VARIANTS = {"tanh": "gelu_tanh", "exact": "gelu"}


def _alternating(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, the functions run in turn within every repeat."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def op_times(width: int, tokens: int, repeats: int) -> dict[str, float]:
    """Milliseconds of the activation alone, forward and forward + backward."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, width, generator=g).requires_grad_()
    grad = torch.randn(tokens, width, generator=g)
    approx = {"tanh": "tanh", "exact": "none"}

    def fwd(a: str) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad():
                F.gelu(x, approximate=a)
        return run

    def fwd_bwd(a: str) -> Callable[[], object]:
        def run() -> None:
            F.gelu(x, approximate=a).backward(grad)
            x.grad = None
        return run

    out = {f"op_fwd_ms_{k}": v * 1e3 for k, v in _alternating({k: fwd(a) for k, a in approx.items()}, repeats).items()}
    out |= {f"op_fwd_bwd_ms_{k}": v * 1e3
            for k, v in _alternating({k: fwd_bwd(a) for k, a in approx.items()}, repeats).items()}
    return out


def step_times(preset: str, batch: int, num_points: int, depth: int | None, resolution: int,
               repeats: int) -> dict[str, float]:
    """Train-step and int8 denoising-step seconds of the DiT-3D network with each activation."""
    from dit3d.bench.dit3d import make_module
    from dit3d.nn.quantize import quantize_int8

    g = torch.Generator().manual_seed(0)
    points = torch.randn(batch, num_points, 3, generator=g)  # random clouds: only shapes matter for speed
    labels = torch.zeros(batch, dtype=torch.long)
    t = torch.full((batch,), 500, dtype=torch.long)
    train, denoise = {}, {}
    for name, act in VARIANTS.items():
        module = make_module(preset, False, depth, resolution, act)  # seeded, no trainer attached
        opt = module.configure_optimizers()["optimizer"]

        def train_step(module=module, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            module.training_step({"points": points, "label": labels}, 0).backward()
            opt.step()

        net = module.ema_model.eval()
        quantize_int8(net)

        def denoise_step(net=net) -> None:
            with torch.no_grad():
                net(points, t, labels)

        train[name], denoise[name] = train_step, denoise_step
    out = {f"train_step_s_{k}": v for k, v in _alternating(train, repeats).items()}
    out |= {f"denoise_step_int8_s_{k}": v for k, v in _alternating(denoise, repeats).items()}
    return out


def run(quick: bool = False, preset: str = "DiT-3D-S/4", batch: int = 8, num_points: int = 2048,
        depth: int | None = None, resolution: int = 32) -> dict[str, Any]:
    """Time both activations alone and inside DiT-3D steps; returns the JSON record."""
    from dit3d.models.dit3d_net import dit3d_preset
    from dit3d.nn import preset_config

    repeats = 3 if quick else 7
    width = 4 * preset_config(dit3d_preset(preset)["trunk"])["hidden_size"]
    tokens = batch * (resolution // dit3d_preset(preset)["patch_size"]) ** 3
    result: dict[str, Any] = {"preset": preset, "batch": batch, "num_points": num_points, "op_shape": [tokens, width]}
    timed = op_times(width, tokens, repeats) | step_times(preset, batch, num_points, depth, resolution,
                                                          1 if quick else 3)
    result |= {k: round(v, 2 if "_ms_" in k else 3) for k, v in timed.items()}
    for key in ("op_fwd_ms", "op_fwd_bwd_ms", "train_step_s", "denoise_step_int8_s"):
        result[f"{key}_ratio"] = round(timed[f"{key}_tanh"] / timed[f"{key}_exact"], 2)
    result["max_abs_difference"] = round(max_gap(), 6)
    return result


def max_gap() -> float:
    """Largest ``|GELU_tanh(x) - GELU(x)|`` on a fine grid over [-10, 10] (float64)."""
    x = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    return (F.gelu(x, approximate="tanh") - F.gelu(x)).abs().max().item()
