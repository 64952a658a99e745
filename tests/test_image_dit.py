"""Image DiT: presets, shapes at 16/32/64, identity at init, training, guided DDIM, EMA, config."""
from pathlib import Path

import pytest
import torch
import yaml

from dit3d.models import IMAGE_DIT_PRESETS, ImageDiT, ImageDiTModule, build_image_dit, sample_images
from dit3d.nn import preset_config, sincos_2d
from dit3d.testing import assert_identity_at_init, assert_window_equals_masked_full, randomize_

ROOT = Path(__file__).resolve().parents[1]


def tiny(image_size: int = 16, patch: int = 4, channels: int = 1, **kw) -> ImageDiT:
    """1-2 blocks, 32 wide: fast enough for many shapes."""
    args = dict(image_size=image_size, in_channels=channels, depth=2, hidden_size=32, num_heads=4, num_classes=10)
    return build_image_dit(f"DiT-Img-Mini/{patch}", **{**args, **kw})


def rand_images(B: int, C: int, S: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, S, S, generator=torch.Generator().manual_seed(seed))


def test_presets_cover_the_paper_sizes_with_widths_divisible_by_four():
    for name in ("DiT-Img-S/2", "DiT-Img-B/2", "DiT-Img-L/4", "DiT-Img-XL/2", "DiT-Img-XL/8", "DiT-Img-Mini/2"):
        assert name in IMAGE_DIT_PRESETS
    sizes = {n: preset_config(c["trunk"]) for n, c in IMAGE_DIT_PRESETS.items()}
    assert all(s["hidden_size"] % 4 == 0 for s in sizes.values())
    assert (sizes["DiT-Img-S/2"]["depth"], sizes["DiT-Img-S/2"]["hidden_size"]) == (12, 384)  # DiT paper, Table 1
    assert (sizes["DiT-Img-XL/2"]["depth"], sizes["DiT-Img-XL/2"]["hidden_size"]) == (28, 1152)
    assert IMAGE_DIT_PRESETS["DiT-Img-B/4"]["patch_size"] == 4
    with pytest.raises(KeyError, match="Did you mean"):
        build_image_dit("DiT-Img-S/3")
    with pytest.raises(ValueError, match="divisible by 4"):
        build_image_dit("DiT-Img-Mini/2", image_size=16, hidden_size=42, num_heads=3)


@pytest.mark.parametrize("size,patch,channels", [(16, 2, 1), (32, 4, 3), (64, 8, 3), (32, 2, 1)])
def test_shapes_at_16_32_64(size, patch, channels):
    net = randomize_(tiny(size, patch, channels, depth=1), std=0.05).eval()
    x = rand_images(2, channels, size)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 999]), torch.tensor([3, 10]))  # 10 = null class
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert net.image_shape == (channels, size, size)
    assert net.tokenizer.grid_size == (size // patch, size // patch)
    assert torch.equal(net.dit.pos_embed, sincos_2d((size // patch,) * 2, 32))  # fixed 2-D sin-cos positions
    with pytest.raises(ValueError, match="build the model for the image size"):
        net(rand_images(1, channels, size * 2), torch.tensor([0]), torch.tensor([0]))


def test_zero_output_and_identity_trunk_at_init():
    net = tiny(32, 4, 3)
    out = net(rand_images(2, 3, 32), torch.tensor([0, 999]), torch.tensor([0, 9]))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() == 0
    assert_identity_at_init(net.dit.trunk, torch.randn(2, 64, 32), torch.randn(2, 32))
    windowed = tiny(32, 4, 3, window_size=(4, 4), window_blocks=(0,))
    assert_identity_at_init(windowed.dit.trunk, torch.randn(2, 64, 32), torch.randn(2, 32), grid=(8, 8))


def test_output_has_one_channel_per_input_channel_no_learned_sigma():
    """GaussianDiffusion has fixed variances, so the network predicts epsilon only."""
    net = tiny(16, 2, 3)
    assert net.dit.trunk.out_dim == net.tokenizer.token_dim == 2 * 2 * 3
    with pytest.raises(ValueError, match="learn_sigma"):
        build_image_dit("DiT-Img-Mini/2", learn_sigma=True)


def test_labels_and_positions_matter_and_samples_never_mix():
    net = randomize_(tiny(16, 4, 1), std=0.1).eval()
    x, t = rand_images(2, 1, 16), torch.tensor([5, 500])
    with torch.no_grad():
        a = net(x, t, torch.tensor([1, 2]))
        b = net(x, t, torch.tensor([1, 7]))
        x2 = x.clone()
        x2[1] = -x2[1]
        c = net(x2, t, torch.tensor([1, 2]))
        rolled = net(x.roll(4, dims=-1), t, torch.tensor([1, 2]))  # shift by one patch
    assert torch.equal(a[0], b[0]) or torch.allclose(a[0], b[0], atol=1e-6)
    assert not torch.allclose(a[1], b[1])
    assert torch.allclose(a[0], c[0], atol=1e-6) and not torch.allclose(a[1], c[1])
    assert not torch.allclose(rolled, a.roll(4, dims=-1), atol=1e-4)  # positions break translation equivariance


def test_window_option_reaches_the_trunk_and_equals_masked_full_attention():
    net = randomize_(tiny(32, 4, 1, window_size=(4, 4), window_blocks=(1,)), std=0.1)
    blocks = net.dit.trunk.blocks
    assert blocks[0].attn.window_size is None and blocks[1].attn.window_size == (4, 4)
    assert_window_equals_masked_full(blocks[1].attn, torch.randn(2, 64, 32), grid=net.tokenizer.grid_size)


def module(trainer: bool = False, **kw) -> ImageDiTModule:
    args = dict(preset="DiT-Img-Mini/4", image_size=16, in_channels=1, depth=2, hidden_size=48, num_heads=4,
                lr=2e-3, ema_decay=0.9)
    m = ImageDiTModule(**{**args, **kw})
    if not trainer:
        m.log = lambda *a, **k: None  # no trainer attached
    return m


def digit_like_batch(B: int = 8) -> dict:
    """Bright squares whose position depends on the label, on a dark background."""
    image = -torch.ones(B, 1, 16, 16)
    label = torch.arange(B) % 10
    for i, y in enumerate(label.tolist()):
        r, c = 2 + (y // 5) * 6, 1 + (y % 5) * 3
        image[i, 0, r:r + 6, c:c + 3] = 1.0
    return {"image": image, "label": label}


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    m = module()
    batch = digit_like_batch()
    opt = m.configure_optimizers()["optimizer"]

    def fixed_loss(net) -> float:  # same t and noise every time
        with torch.no_grad():
            return m.diffusion.training_loss(net, batch["image"], generator=torch.Generator().manual_seed(0),
                                             y=batch["label"]).item()

    before = fixed_loss(m.model)
    ema_before = [p.clone() for p in m.ema_model.parameters()]
    for step in range(30):
        opt.zero_grad()
        m.training_step(batch, step).backward()
        opt.step()
        m.update_ema(step)
    assert fixed_loss(m.model) < 0.8 * before
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, m.ema_model.parameters()))
    assert m.sampling_model is m.ema_model
    raw = module(ema_decay=0.0)
    assert raw.ema_model is None and raw.sampling_model is raw.model


def test_label_dropout_uses_the_null_class():
    m = module(class_dropout=0.5)
    y = torch.zeros(1000, dtype=torch.long)
    dropped = m.model.drop_labels(y, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 10} and 400 < int((dropped == 10).sum()) < 600


def test_guided_ddim_is_finite_shaped_and_seeded():
    m = module(num_timesteps=50)
    randomize_(m.ema_model, std=0.05)

    def draw(seed: int, **kw) -> torch.Tensor:
        return m.sample(3, label=torch.tensor([0, 4, 9]), steps=5, guidance=4.0,
                        generator=torch.Generator().manual_seed(seed), **kw)

    out = draw(0)
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()
    assert out.abs().max() <= 1.0  # x0 clipped to the data range
    assert torch.equal(draw(0), out) and not torch.equal(draw(1), out)
    assert torch.isfinite(draw(0, eta=1.0, clip_denoised=None)).all()
    # guidance 1 is the plain conditional model; other weights change the samples
    assert not torch.equal(m.sample(3, label=torch.tensor([0, 4, 9]), steps=5, guidance=1.0,
                                    generator=torch.Generator().manual_seed(0)), out)
    ddpm = m.sample(2, label=3, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    assert ddpm.shape == (2, 1, 16, 16) and torch.isfinite(ddpm).all()
    assert m.model.training  # sampling restores the mode
    with pytest.raises(ValueError, match="sampler='ddim'"):
        m.sample(1, sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        m.sample(1, label=10)


def test_sampling_an_unconditional_model():
    net = tiny(16, 4, 1, num_classes=0)
    from dit3d.objectives import GaussianDiffusion

    diffusion = GaussianDiffusion(20)
    out = sample_images(net, diffusion, 2, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="class-conditional"):
        sample_images(net, diffusion, 2, steps=3, guidance=2.0)


def test_bad_batches_say_what_is_expected():
    m = module()
    with pytest.raises(ValueError, match="'image'"):
        m.training_step({"images": torch.zeros(2, 1, 16, 16)}, 0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        m.training_step({"image": torch.zeros(2, 16, 16), "label": torch.zeros(2, dtype=torch.long)}, 0)


def test_module_rebuilds_from_its_hyperparameters():
    m = module()
    randomize_(m, std=0.05)
    again = ImageDiTModule(**dict(m.hparams))
    again.load_state_dict(m.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(again.sample(2, label=1, steps=3, guidance=2.0, generator=g()),
                       m.sample(2, label=1, steps=3, guidance=2.0, generator=g()))
    assert m.diffusion_config["num_timesteps"] == 1000 and m.diffusion_config["prediction"] == "eps"


def test_cpu_config_builds_the_module_and_data():
    cfg = yaml.safe_load((ROOT / "configs/image/digits_cpu.yaml").read_text())
    assert cfg["model"]["class_path"] == "dit3d.models.ImageDiTModule"
    assert cfg["data"]["class_path"] == "dit3d.data.DigitsDataModule"
    m = ImageDiTModule(**cfg["model"]["init_args"])
    assert m.model.image_shape == (1, 16, 16) and m.model.null_class == 10
    pytest.importorskip("sklearn")
    from dit3d.data import DigitsDataModule

    dm = DigitsDataModule(**cfg["data"]["init_args"])
    assert dm.image_shape == m.model.image_shape and dm.num_classes == m.hparams.num_classes


def test_two_lightning_steps_on_the_digits(tmp_path):
    pytest.importorskip("sklearn")
    from lightning.pytorch import Trainer

    from dit3d.data import DigitsDataModule

    m = module(trainer=True)
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    ema_before = [p.clone() for p in m.ema_model.parameters()]
    trainer.fit(m, DigitsDataModule(batch_size=16))
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, m.ema_model.parameters()))  # optimizer_step hook
