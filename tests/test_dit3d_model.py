"""DiT-3D network, Lightning module and sampling on tiny hand-made point clouds."""
from pathlib import Path

import pytest
import torch
import yaml

from dit3d.models import DIT3D_PRESETS, PAPER_WINDOW_BLOCKS, DiT3D, DiT3DModule, build_dit3d
from dit3d.nn import preset_config
from dit3d.testing import assert_identity_at_init, assert_window_equals_masked_full, randomize_

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> DiT3D:
    """2 blocks, 48 wide, a 4x4x4 token grid from 8^3 voxels and 2^3 patches."""
    return build_dit3d("DiT-3D-Mini/2", resolution=8, depth=2, hidden_size=48, num_heads=4, num_classes=2, **kw)


def clouds(B: int = 2, N: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed))


def test_presets_cover_the_paper_sizes_with_widths_divisible_by_six():
    for name in ("DiT-3D-S/4", "DiT-3D-B/4", "DiT-3D-L/4", "DiT-3D-XL/4", "DiT-3D-Mini/4", "DiT-3D-S/2", "DiT-3D-S/8"):
        assert name in DIT3D_PRESETS
    widths = {n: preset_config(c["trunk"])["hidden_size"] for n, c in DIT3D_PRESETS.items()}
    assert all(w % 6 == 0 for w in widths.values())
    assert widths["DiT-3D-L/4"] == widths["DiT-3D-XL/4"] == 1152 and widths["DiT-3D-S/4"] == 384
    with pytest.raises(KeyError, match="Did you mean"):
        build_dit3d("DiT-3D-S/5")
    with pytest.raises(ValueError, match="divisible by 6"):
        build_dit3d("DiT-3D-Mini/4", hidden_size=64, num_heads=4)


def test_zero_output_and_identity_trunk_at_init():
    net = tiny()
    x, t, y = clouds(), torch.tensor([0, 999]), torch.tensor([0, 1])
    out = net(x, t, y)
    assert out.shape == (2, 40, 3) and out.abs().max() == 0
    tokens = torch.randn(2, 64, 48)
    assert_identity_at_init(net.dit.trunk, tokens, torch.randn(2, 48))


def test_permutation_equivariant_in_the_points():
    net = randomize_(tiny(), std=0.1).eval()
    x, t, y = clouds(), torch.tensor([5, 500]), torch.tensor([1, 0])
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(net(x[:, perm], t, y), net(x, t, y)[:, perm], atol=1e-4)


@pytest.mark.parametrize("window_blocks", [(), (0,)])
def test_samples_never_mix(window_blocks):
    net = randomize_(tiny(window_size=(2, 2, 2), window_blocks=window_blocks), std=0.1).eval()
    x, t, y = clouds(), torch.tensor([5, 500]), torch.tensor([1, 0])
    x2 = x.clone()
    x2[1] = x2[1] * 3 + 1  # perturb sample 1 only
    with torch.no_grad():
        a, b = net(x, t, y), net(x2, t, y)
    assert torch.equal(a[0], b[0]) or torch.allclose(a[0], b[0], atol=1e-6)
    assert not torch.allclose(a[1], b[1])


def test_window_option_reaches_the_trunk_and_equals_masked_full_attention():
    net = randomize_(tiny(window_size=(2, 2, 2), window_blocks=(0,)), std=0.1)
    blocks = net.dit.trunk.blocks
    assert blocks[0].attn.window_size == (2, 2, 2) and blocks[1].attn.window_size is None
    assert_window_equals_masked_full(blocks[0].attn, torch.randn(2, 64, 48), grid=net.tokenizer.grid_size)
    assert tiny().dit.trunk.window_blocks == ()  # global attention by default, as the released code
    assert PAPER_WINDOW_BLOCKS == (0, 3, 6, 9)
    with pytest.raises(ValueError, match="outside"):
        tiny(window_blocks=PAPER_WINDOW_BLOCKS)  # 2 blocks: names blocks that do not exist


def module(**kw) -> DiT3DModule:
    args = dict(preset="DiT-3D-Mini/4", resolution=16, depth=2, hidden_size=48, num_heads=4, lr=2e-3, ema_decay=0.9)
    m = DiT3DModule(**{**args, **kw})
    m.log = lambda *a, **k: None  # no trainer attached
    return m


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    m = module()
    batch = {"points": clouds(4, 64, seed=1), "label": torch.zeros(4, dtype=torch.long)}
    opt = m.configure_optimizers()["optimizer"]

    def fixed_loss(net) -> float:  # same t and noise every time
        with torch.no_grad():
            return m.diffusion.training_loss(net, batch["points"], generator=torch.Generator().manual_seed(0),
                                             y=batch["label"]).item()

    before = fixed_loss(m.model)
    ema_before = [p.clone() for p in m.ema_model.parameters()]
    for step in range(25):
        opt.zero_grad()
        m.training_step(batch, step).backward()
        opt.step()
        m.update_ema(step)
    assert fixed_loss(m.model) < 0.9 * before
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, m.ema_model.parameters()))
    assert m.sampling_model is m.ema_model


def test_ddim_and_ddpm_sampling_return_finite_clouds():
    m = module(num_timesteps=20, num_classes=2)
    randomize_(m.ema_model, std=0.05)
    g = torch.Generator().manual_seed(0)
    out = m.sample(3, num_points=50, label=1, sampler="ddim", steps=5, guidance=2.0, generator=g)
    assert out.shape == (3, 50, 3) and torch.isfinite(out).all()
    out = m.sample(2, num_points=30, label=torch.tensor([0, 1]), sampler="ddpm")
    assert out.shape == (2, 30, 3) and torch.isfinite(out).all()
    again = m.sample(3, num_points=50, label=1, steps=5, guidance=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.sample(3, 50, 1, steps=5, guidance=2.0, generator=torch.Generator().manual_seed(0)), again)
    with pytest.raises(ValueError, match="sampler='ddim'"):
        m.sample(1, 10, sampler="ddpm", steps=5)


def test_bad_batches_say_what_is_expected():
    m = module()
    with pytest.raises(ValueError, match="'points'"):
        m.training_step({"pos": torch.zeros(2, 5, 3)}, 0)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        m.training_step({"points": torch.zeros(2, 5, 2), "label": torch.zeros(2, dtype=torch.long)}, 0)


def test_cpu_config_builds_the_module():
    cfg = yaml.safe_load((ROOT / "configs/dit3d/modelnet_chair_cpu.yaml").read_text())
    assert cfg["model"]["class_path"] == "dit3d.models.DiT3DModule"
    assert cfg["data"]["class_path"] == "dit3d.data.PointCloudDataModule"
    m = DiT3DModule(**cfg["model"]["init_args"])
    assert m.model.tokenizer.grid_size == (8, 8, 8)


def test_benchmark_runs_on_a_tiny_preset():
    from dit3d.bench import run_benchmark

    result = run_benchmark("dit3d", quick=True, preset="DiT-3D-Mini/4", depth=2, batch=2, num_points=64,
                           sample_steps=2, mlp_act="gelu")
    for key in ("train_step_s", "denoise_step_s", "sample_2_s", "train_step_s_window", "denoise_step_s_window",
                "denoise_step_int8_s", "sample_2_int8_s", "sample_int8_speedup", "sample_2_int8_window_s"):
        assert result[key] > 0, key
    assert result["samples_finite"] and result["int8_samples_finite"] and result["mlp_act"] == "gelu"
    from dit3d.nn.compiled import cpp_compiler

    if cpp_compiler() is not None:  # compiled sampling is timed wherever torch.compile can build CPU kernels
        for key in ("compile_int8_s", "sample_2_int8_compiled_s", "compile_int8_window_s",
                    "sample_2_int8_window_compiled_s"):
            assert result[key] > 0, key
    for key in ("compile_train_s", "train_step_compiled_s", "compile_train_window_s", "train_step_compiled_window_s"):
        assert result[key] is None, key  # --quick skips compiling the train step (tests/test_compiled.py covers it)
