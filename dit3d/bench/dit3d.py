"""``python -m dit3d.bench dit3d``: DiT-3D training and sampling speed on random clouds.

- ``train_step_s``: DiT-3D-S/4 (global attention, as the released code), one DDPM train
  step on ``batch`` x ``num_points`` random points: voxelize, forward, epsilon MSE with
  label dropout, backward, fused AdamW and the EMA update (:class:`DiT3DModule`).
- ``denoise_step_s``: one denoising forward (no grad) at the same batch.
- ``sample_{batch}_s``: ``batch`` clouds drawn with DDIM in ``sample_steps`` steps at
  ``eta`` (100 and 1 by default: the shipped ``dit3d-chair-cpu``'s sampler, whose 1-NNA
  matches 1000-step DDPM on the development chairs; its card has the sweep), measured end
  to end, no guidance (one forward per step);
  ``sample_{batch}_ddpm1000_est_s`` is an *estimate* of the 1000-step ancestral sampler,
  1000 x ``denoise_step_s``, not a measurement.
- ``sample_{batch}_cached_s``: the same sampler reusing each block's attention and MLP
  outputs between full steps every ``cache_interval`` steps (FORA,
  :mod:`dit3d.nn.step_cache`), and ``sample_cache_speedup``, the ratio of the two runs.
- ``denoise_step_int8_s``, ``sample_{batch}_int8_s``: the same denoising step and default
  sampler with the trunk's attention and MLP layers in int8 (:mod:`dit3d.nn.quantize`), and
  ``sample_int8_speedup``, the ratio of the float and int8 sampling runs.
- ``*_window``: the same with the paper's 3-D window attention (4x4x4-token windows in
  blocks 0, 3, 6, 9), side by side with global attention; ``sample_{batch}_int8_window_s``
  is the int8 sampler on that network.
- ``compile_int8_s``, ``sample_{batch}_int8_compiled_s`` (and ``*_window``): the int8
  sampling networks compiled with ``torch.compile`` (:mod:`dit3d.nn.compiled`): seconds of
  the first forward, which compiles (from a cold or warm Inductor cache, whichever this
  machine has), then of the default sampler; ``None`` without a C++ compiler.
- ``train_step_compiled_s`` (and ``*_window``): the same train step with the network
  compiled for training (:func:`~dit3d.nn.compiled.compile_for_training`, what
  ``compile_model: true`` does in a config), on a fresh network of the same seed;
  ``compile_train_s`` is the first, compiling step; ``None`` without a C++ compiler or
  with ``--quick``.
- ``mlp_act``: the trunk's MLP activation for every network timed here: DiT's
  ``"gelu_tanh"`` (default) or the exact ``"gelu"`` (``--mlp-act gelu``; faster on CPUs,
  ``python -m dit3d.bench gelu``).

The issue's reference implementation on this 2-core CPU: 8.1 s per train step at 2
threads (11.9 s at 1), 2.05 s per denoising step; they are reported next to ours.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from dit3d.bench.timing import median_time

REFERENCE = {"train_step_s_2_threads": 8.1, "train_step_s_1_thread": 11.9, "denoise_step_s": 2.05}


def make_module(preset: str, window: bool, depth: int | None, resolution: int, mlp_act: str = "gelu_tanh"):
    """A seeded ``DiT3DModule`` (``window``: the paper's window-attention blocks), no trainer attached."""
    from dit3d.models import PAPER_WINDOW_BLOCKS, DiT3DModule
    from dit3d.models.dit3d_net import dit3d_preset
    from dit3d.nn import preset_config

    torch.manual_seed(0)
    n_blocks = depth or preset_config(dit3d_preset(preset)["trunk"])["depth"]
    blocks = [b for b in PAPER_WINDOW_BLOCKS if b < n_blocks] if window else []
    module = DiT3DModule(preset=preset, depth=depth, resolution=resolution, window_blocks=blocks, ema_decay=0.9999,
                         trunk_options={"mlp_act": mlp_act})
    module.log = lambda *a, **k: None  # no trainer attached
    return module


def train_step_fn(module, points: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """A closure running one DDPM train step of ``module`` on this batch: loss, backward,
    AdamW, EMA update."""
    opt = module.configure_optimizers()["optimizer"]
    batch = {"points": points, "label": labels}

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        opt.step()
        module.update_ema(0)

    return train_step


def step_times(module, points: torch.Tensor, labels: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median train-step and denoising-step seconds."""
    train_step = train_step_fn(module, points, labels)
    module.model.eval()
    denoise = denoise_time(module, points, labels, repeats)
    module.model.train()
    return {"train_step_s": median_time(train_step, repeats, warmup=1), "denoise_step_s": denoise}


@torch.no_grad()
def denoise_time(module, points: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    """Median seconds of one denoising forward of ``module.model`` at step 500 (no grad)."""
    t = torch.full((points.shape[0],), 500, dtype=torch.long)
    return median_time(lambda: module.model(points, t, labels), repeats, warmup=1)


def int8_times(module, points: torch.Tensor, labels: torch.Tensor, repeats: int, batch: int, num_points: int,
               sample_steps: int, eta: float, g: torch.Generator) -> dict[str, float]:
    """Denoising step and sampling seconds after :func:`~dit3d.nn.quantize.quantize_int8`
    (converts ``module``'s networks in place: call it last)."""
    from dit3d.nn.quantize import quantize_int8

    for net in {id(m): m for m in (module.model, module.sampling_model)}.values():
        quantize_int8(net.eval())
    denoise = denoise_time(module, points, labels, repeats)
    start = time.perf_counter()
    clouds = module.sample(batch, num_points, sampler="ddim", steps=sample_steps, eta=eta, generator=g)
    return {"denoise_step_int8_s": round(denoise, 3), f"sample_{batch}_int8_s": round(time.perf_counter() - start, 2),
            "int8_samples_finite": bool(torch.isfinite(clouds).all())}


def int8_window_time(module, batch: int, num_points: int, sample_steps: int, eta: float,
                     g: torch.Generator) -> float:
    """Seconds of the default sampler with ``module`` (window attention) in int8 (converted in place)."""
    from dit3d.nn.quantize import quantize_int8

    quantize_int8(module.sampling_model.eval())
    start = time.perf_counter()
    module.sample(batch, num_points, sampler="ddim", steps=sample_steps, eta=eta, generator=g)
    return round(time.perf_counter() - start, 2)


def compiled_times(module, points: torch.Tensor, labels: torch.Tensor, batch: int, num_points: int,
                   sample_steps: int, eta: float, g: torch.Generator) -> tuple[float | None, float | None]:
    """``(compile_s, sample_s)`` after :func:`~dit3d.nn.compiled.compile_for_sampling` of
    ``module``'s sampling network (in place): the first forward, which compiles (cold or warm
    Inductor cache: whatever this machine holds), then the default sampler; ``(None, None)``
    without a C++ compiler."""
    from dit3d.nn.compiled import compile_for_sampling, cpp_compiler

    if cpp_compiler() is None:
        return None, None
    net = compile_for_sampling(module.sampling_model.eval())
    t = torch.full((points.shape[0],), 500, dtype=torch.long)
    start = time.perf_counter()
    with torch.no_grad():
        net(points, t, labels)
    compile_s = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    module.sample(batch, num_points, sampler="ddim", steps=sample_steps, eta=eta, generator=g)
    return compile_s, round(time.perf_counter() - start, 2)


def compiled_train_times(preset: str, window: bool, depth: int | None, resolution: int, mlp_act: str,
                         points: torch.Tensor, labels: torch.Tensor, repeats: int) -> tuple[float | None, float | None]:
    """``(compile_s, train_step_s)`` of a fresh module whose network is compiled for training:
    the first step (which compiles forward and backward), then the median step; ``(None,
    None)`` without a C++ compiler."""
    from dit3d.nn.compiled import compile_for_training, cpp_compiler

    if cpp_compiler() is None:
        return None, None
    module = make_module(preset, window, depth, resolution, mlp_act)
    compile_for_training(module.model)
    train_step = train_step_fn(module, points, labels)
    start = time.perf_counter()
    train_step()
    compile_s = round(time.perf_counter() - start, 2)
    return compile_s, round(median_time(train_step, repeats, warmup=1), 3)


def run(quick: bool = False, preset: str = "DiT-3D-S/4", batch: int = 8, num_points: int = 2048,
        sample_steps: int = 100, eta: float = 1.0, depth: int | None = None, resolution: int = 32,
        cache_interval: int = 2, mlp_act: str = "gelu_tanh") -> dict[str, Any]:
    """Time DiT-3D train/denoise steps and DDIM sampling (window, cached, int8); returns the JSON record."""
    repeats = 1 if quick else 3
    g = torch.Generator().manual_seed(0)
    points = torch.randn(batch, num_points, 3, generator=g)  # random clouds: only shapes matter for speed
    labels = torch.zeros(batch, dtype=torch.long)
    result: dict[str, Any] = {"preset": preset, "batch": batch, "num_points": num_points, "mlp_act": mlp_act}
    module = make_module(preset, False, depth, resolution, mlp_act)
    result["params_m"] = round(sum(p.numel() for p in module.model.parameters()) / 1e6, 2)
    timed = step_times(module, points, labels, repeats)
    window_module = make_module(preset, True, depth, resolution, mlp_act)
    window = step_times(window_module, points, labels, repeats)
    result |= {k: round(v, 3) for k, v in timed.items()}
    result |= {f"{k}_window": round(v, 3) for k, v in window.items()}
    for suffix, is_window in (("", False), ("_window", True)):  # two compiles of forward + backward: not in --quick
        compile_s, step_s = ((None, None) if quick else
                             compiled_train_times(preset, is_window, depth, resolution, mlp_act, points, labels, repeats))
        result[f"compile_train{suffix}_s"] = compile_s
        result[f"train_step_compiled{suffix}_s"] = step_s
    start = time.perf_counter()
    clouds = module.sample(batch, num_points, sampler="ddim", steps=sample_steps, eta=eta, generator=g)
    result[f"sample_{batch}_s"] = round(time.perf_counter() - start, 2)
    result["sampler"] = f"ddim-{sample_steps}, eta {eta} (measured)"
    start = time.perf_counter()
    cached = module.sample(batch, num_points, sampler="ddim", steps=sample_steps, eta=eta, generator=g,
                           cache_interval=cache_interval)
    result[f"sample_{batch}_cached_s"] = round(time.perf_counter() - start, 2)
    result["cache_interval"] = cache_interval
    result["sample_cache_speedup"] = round(result[f"sample_{batch}_s"] / result[f"sample_{batch}_cached_s"], 2)
    result |= int8_times(module, points, labels, repeats, batch, num_points, sample_steps, eta, g)
    result["sample_int8_speedup"] = round(result[f"sample_{batch}_s"] / result[f"sample_{batch}_int8_s"], 2)
    result[f"sample_{batch}_int8_window_s"] = int8_window_time(window_module, batch, num_points, sample_steps, eta, g)
    for suffix, net_module in (("", module), ("_window", window_module)):
        compile_s, sample_s = compiled_times(net_module, points, labels, batch, num_points, sample_steps, eta, g)
        result[f"compile_int8{suffix}_s"] = compile_s
        result[f"sample_{batch}_int8{suffix}_compiled_s"] = sample_s
    result[f"sample_{batch}_ddpm1000_est_s"] = round(1000 * timed["denoise_step_s"], 1)
    result["samples_finite"] = bool(torch.isfinite(clouds).all() and torch.isfinite(cached).all())
    threads = torch.get_num_threads()
    ref = REFERENCE["train_step_s_1_thread"] if threads == 1 else REFERENCE["train_step_s_2_threads"]
    result["reference"] = REFERENCE
    if threads in (1, 2) and preset == "DiT-3D-S/4" and (batch, num_points) == (8, 2048):
        result["train_speedup_vs_reference"] = round(ref / timed["train_step_s"], 2)
        # the reference's window path never runs, so its time is global attention's either way
        result["train_speedup_vs_reference_window"] = round(ref / window["train_step_s"], 2)
        for suffix in ("", "_window"):
            if result[f"train_step_compiled{suffix}_s"] is not None:
                speedup = ref / result[f"train_step_compiled{suffix}_s"]
                result[f"train_speedup_vs_reference_compiled{suffix}"] = round(speedup, 2)
        result["denoise_speedup_vs_reference"] = round(REFERENCE["denoise_step_s"] / timed["denoise_step_s"], 2)
    return result
