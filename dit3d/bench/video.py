"""``python -m dit3d.bench video``: train-step time and model FLOP utilisation of the video DiT, and
what factorised attention saves over joint attention at 16 frames.

- ``step_s`` / ``mfu``: the model and batch of ``configs/video/moving_digits_cpu.yaml``
  (:data:`CPU_CONFIG`) on random clips: one train step of
  :class:`~dit3d.models.VideoDiTModule` (task masks, noising, forward, masked MSE of the
  config's target, v, backward, fused AdamW, EMA update). FLOPs are counted by torch's
  ``FlopCounterMode`` (matmuls and attention, forward and backward;
  :func:`dit3d.bench.timing.count_flops`) and divided by the step time and the fp32
  matmul peak measured in the same run.
- ``f16_*``: 16 frames of 32x32 in 4x4 patches (a ``(16, 8, 8)`` grid, 1,024 tokens) on
  the same trunk, batch 4, once with factorised attention in every block (attention
  within each frame, then across frames) and once with joint space-time attention.
  ``f16_attn_flop_ratio`` is factorised over joint FLOPs of the attention products alone
  (:math:`QK^\\top` and :math:`PV`; in theory :math:`(H'W' + F)/(F H' W') = 80/1024`),
  ``f16_step_flop_ratio`` the same for the whole train step (factorised blocks carry a
  second set of attention projections), ``f16_step_time_ratio`` the measured step times.

Random clips: only shapes matter for speed. ``--quick`` times one step after one warm-up.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from dit3d.bench.timing import _cpu_attention_formulas, count_flops, matmul_peak_gflops, median_time

#: the model and batch of configs/video/moving_digits_cpu.yaml (kept equal by tests/test_bench_video.py)
CPU_CONFIG: dict[str, Any] = {"trunk": "DiT-Mini", "patch_size": 4, "time_patch": 1, "num_frames": 8,
                              "image_size": 32, "attention": "joint", "prediction": "v", "batch": 8,
                              "ema_decay": 0.999}


def make_module(trunk: str, patch_size: int, time_patch: int, num_frames: int, image_size: int, attention: str,
                ema_decay: float = 0.9999, **overrides: Any):
    """A :class:`~dit3d.models.VideoDiTModule` with seeded weights and no trainer attached."""
    from dit3d.models import VideoDiTModule

    torch.manual_seed(0)
    module = VideoDiTModule(trunk=trunk, patch_size=patch_size, time_patch=time_patch, num_frames=num_frames,
                            image_size=image_size, attention=attention, ema_decay=ema_decay, **overrides)
    module.log = lambda *a, **k: None  # no trainer attached
    return module


def _step_fn(module, batch: int):
    g = torch.Generator().manual_seed(0)
    data = {"video": torch.rand(batch, *module.model.video_shape, generator=g) * 2 - 1}
    opt = module.configure_optimizers()["optimizer"]
    module.train()

    def step() -> None:
        torch.manual_seed(0)  # the same task masks, t and noise every step
        opt.zero_grad(set_to_none=True)
        module.training_step(data, 0).backward()
        opt.step()
        module.update_ema(0)

    return step


def attention_flops(fn) -> int:
    """FLOPs of the scaled-dot-product-attention kernels alone (forward and backward) in ``fn()``."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        fn()
    ops = counter.get_flop_counts().get("Global", {})
    return int(sum(v for op, v in ops.items() if "attention" in str(op)))


def measure(module, batch: int, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds, counted FLOPs (all, attention only) of one train step on random clips."""
    step = _step_fn(module, batch)
    flops = count_flops(step)
    attn = attention_flops(step)
    seconds = median_time(step, repeats, warmup=warmup)
    tokens = batch * module.model.tokenizer.num_tokens
    return {"step_s": seconds, "gflop_per_step": flops / 1e9, "attn_gflop_per_step": attn / 1e9,
            "tokens_per_s": tokens / seconds, "params_m": sum(p.numel() for p in module.model.parameters()) / 1e6}


def run(quick: bool = False, frames16_batch: int = 4, frames16_depth: int | None = None) -> dict[str, Any]:
    """Time the video DiT's CPU-config train step and 16-frame factorised vs joint attention; returns the record."""
    repeats, warmup = (1, 1) if quick else (5, 2)
    peak = matmul_peak_gflops()
    cfg = CPU_CONFIG
    small = measure(make_module(cfg["trunk"], cfg["patch_size"], cfg["time_patch"], cfg["num_frames"],
                                cfg["image_size"], cfg["attention"], cfg["ema_decay"], prediction=cfg["prediction"]),
                    cfg["batch"], repeats, warmup)
    f16 = {}
    for attention in ("factorised", "joint"):
        module = make_module(cfg["trunk"], 4, 1, 16, 32, attention, depth=frames16_depth)
        f16[attention] = measure(module, frames16_batch, max(1, repeats // 2), 1)
    peak = max(peak, matmul_peak_gflops())  # re-measure: the machine may have sped up since
    mfu = lambda r: r["gflop_per_step"] / r["step_s"] / peak  # noqa: E731
    fact, joint = f16["factorised"], f16["joint"]
    return {
        "config": "configs/video/moving_digits_cpu.yaml",
        "trunk": cfg["trunk"],
        "video": [1, cfg["num_frames"], cfg["image_size"], cfg["image_size"]],
        "patch": [cfg["time_patch"], cfg["patch_size"], cfg["patch_size"]],
        "attention": cfg["attention"],
        "batch": cfg["batch"],
        "params_m": round(small["params_m"], 3),
        "peak_gflops": round(peak, 1),
        "step_s": round(small["step_s"], 4),
        "tokens_per_s": round(small["tokens_per_s"]),
        "gflop_per_step": round(small["gflop_per_step"], 2),
        "mfu": round(mfu(small), 3),
        "f16_video": [1, 16, 32, 32],
        "f16_grid": [16, 8, 8],
        "f16_batch": frames16_batch,
        "f16_factorised_step_s": round(fact["step_s"], 4),
        "f16_joint_step_s": round(joint["step_s"], 4),
        "f16_factorised_mfu": round(mfu(fact), 3),
        "f16_joint_mfu": round(mfu(joint), 3),
        "f16_attn_flop_ratio": round(fact["attn_gflop_per_step"] / joint["attn_gflop_per_step"], 4),
        "f16_step_flop_ratio": round(fact["gflop_per_step"] / joint["gflop_per_step"], 4),
        "f16_step_time_ratio": round(fact["step_s"] / joint["step_s"], 4),
        "repeats": repeats,
        "step": f"DDPM train step with task masks: noise, forward, masked {cfg['prediction']} MSE, backward, fused "
                "AdamW, EMA update",
    }
