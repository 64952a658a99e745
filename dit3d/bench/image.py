"""``python -m dit3d.bench image``: train-step time and model FLOP utilisation of the image DiT.

- ``step_s``: DiT-Img-S/2 (DiT-S trunk, 2x2 patches; Peebles & Xie 2023, Table 1) on a
  batch of 64 random 32x32x3 images (256 tokens each, CIFAR-sized): one DDPM train step of
  :class:`~dit3d.models.ImageDiTModule` (noising, forward, epsilon MSE with label dropout,
  backward, fused AdamW, EMA update).
- ``mfu``: FLOPs of that step counted by torch's ``FlopCounterMode`` (matmuls and
  attention, forward and backward; :func:`dit3d.bench.timing.count_flops`) divided by the
  step time and by the fp32 matmul peak measured in the same run
  (:func:`dit3d.bench.timing.matmul_peak_gflops`), as ``python -m dit3d.bench trunk``.
- ``cpu_config_*``: the same for the model and batch of ``configs/image/digits_cpu.yaml``
  (DiT-Img-Mini/4 on 64 digits of 16x16x1, 16 tokens each).

Random images: only shapes matter for speed. ``--quick`` times one step after one warm-up
(DiT-Img-S/2 takes tens of seconds a step on one CPU thread).
"""
from __future__ import annotations

from typing import Any

import torch

from dit3d.bench.timing import count_flops, matmul_peak_gflops, median_time

#: the model and batch of configs/image/digits_cpu.yaml (kept equal by tests/test_image_metrics.py)
CPU_CONFIG: dict[str, Any] = {"preset": "DiT-Img-Mini/4", "image_size": 16, "in_channels": 1, "batch": 64,
                              "num_classes": 10, "class_dropout": 0.1, "ema_decay": 0.999}


def make_module(preset: str, image_size: int, in_channels: int, num_classes: int = 10, class_dropout: float = 0.1,
                ema_decay: float = 0.9999):
    """An :class:`~dit3d.models.ImageDiTModule` with seeded weights and no trainer attached."""
    from dit3d.models import ImageDiTModule

    torch.manual_seed(0)
    module = ImageDiTModule(preset=preset, image_size=image_size, in_channels=in_channels, num_classes=num_classes,
                            class_dropout=class_dropout, ema_decay=ema_decay)
    module.log = lambda *a, **k: None  # no trainer attached
    return module


def measure(module, batch: int, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds and counted FLOPs of one train step on a random batch."""
    g = torch.Generator().manual_seed(0)
    C, H, W = module.model.image_shape
    data = {"image": torch.rand(batch, C, H, W, generator=g) * 2 - 1,
            "label": torch.randint(0, 10, (batch,), generator=g)}
    opt = module.configure_optimizers()["optimizer"]
    module.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        module.training_step(data, 0).backward()
        opt.step()
        module.update_ema(0)

    flops = count_flops(step)
    seconds = median_time(step, repeats, warmup=warmup)
    tokens = batch * module.model.tokenizer.num_tokens
    return {"step_s": seconds, "gflop_per_step": flops / 1e9, "tokens_per_s": tokens / seconds,
            "params_m": sum(p.numel() for p in module.model.parameters()) / 1e6}


def run(quick: bool = False, preset: str = "DiT-Img-S/2", batch: int = 64, image_size: int = 32,
        in_channels: int = 3) -> dict[str, Any]:
    """Time the image DiT's train step and MFU, and the CPU config's; returns the JSON record."""
    repeats, warmup = (1, 1) if quick else (3, 1)
    peak = matmul_peak_gflops()
    big = measure(make_module(preset, image_size, in_channels), batch, repeats, warmup)
    cfg = CPU_CONFIG
    small = measure(make_module(cfg["preset"], cfg["image_size"], cfg["in_channels"], cfg["num_classes"],
                                cfg["class_dropout"], cfg["ema_decay"]), cfg["batch"], max(repeats, 5), 2)
    peak = max(peak, matmul_peak_gflops())  # re-measure: the machine may have sped up since
    mfu = lambda r: r["gflop_per_step"] / r["step_s"] / peak  # noqa: E731
    return {
        "preset": preset,
        "image": [in_channels, image_size, image_size],
        "batch": batch,
        "params_m": round(big["params_m"], 2),
        "peak_gflops": round(peak, 1),
        "step_s": round(big["step_s"], 3),
        "tokens_per_s": round(big["tokens_per_s"]),
        "gflop_per_step": round(big["gflop_per_step"], 1),
        "mfu": round(mfu(big), 3),
        "cpu_config": "configs/image/digits_cpu.yaml",
        "cpu_config_preset": cfg["preset"],
        "cpu_config_image": [cfg["in_channels"], cfg["image_size"], cfg["image_size"]],
        "cpu_config_batch": cfg["batch"],
        "cpu_config_step_s": round(small["step_s"], 4),
        "cpu_config_gflop_per_step": round(small["gflop_per_step"], 2),
        "cpu_config_mfu": round(mfu(small), 3),
        "repeats": repeats,
        "step": "DDPM train step: noise, forward, eps MSE, backward, fused AdamW, EMA update",
    }
