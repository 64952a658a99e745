"""ImageGenerator: Lightning checkpoint -> pretrained folder -> seeded, guided samples and a PNG grid."""
import numpy as np
import pytest
import torch

from dit3d.api_images import ImageGenerator, image_grid, load_image_dit_checkpoint, write_png
from dit3d.models import ImageDiTModule, build_image_dit
from dit3d.pretrained import PretrainedError
from dit3d.testing import randomize_


@pytest.fixture
def module() -> ImageDiTModule:
    m = ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=32, num_heads=4,
                       num_timesteps=20, ema_decay=0.9)
    randomize_(m, std=0.05)
    return m.eval()


def test_checkpoint_to_pretrained_folder_round_trip(module, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    loaded = load_image_dit_checkpoint(ckpt)
    gen = ImageGenerator.from_lightning(loaded, class_names=[f"digit {i}" for i in range(10)], sampling={"steps": 4})
    a = gen.sample(5, label="digit 7", seed=0)
    assert a.shape == (5, 1, 16, 16) and torch.isfinite(a).all() and a.abs().max() <= 1
    folder = gen.save_pretrained(tmp_path / "gen", extra={"trained": "test"})
    again = ImageGenerator.from_pretrained(folder)
    assert again.class_names[7] == "digit 7" and again.sampling["steps"] == 4 and again.sampling["guidance"] == 4.0
    assert torch.equal(again.sample(5, label=7, seed=0), a)  # same seed, same images
    # Batching keeps each image's noise; only GEMM rounding may differ with the batch shape (seen: 1.8e-7 on AMD EPYC).
    torch.testing.assert_close(again.sample(5, label=7, seed=0, batch_size=2), a, rtol=0, atol=1e-5)
    assert not torch.equal(again.sample(5, label=7, seed=1), a)
    mixed = again.sample(3, label=[0, "digit 1", 2], seed=0, guidance=1.0, sampler="ddpm")
    assert mixed.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown class"):
        again.sample(1, label="digit 10")
    with pytest.raises(ValueError, match="unknown sampling options"):
        again.sample(1, temperature=2.0)
    with pytest.raises(PretrainedError, match="neither a pretrained folder"):
        ImageGenerator.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not an ImageDiTModule checkpoint"):
        torch.save({"state_dict": {}, "hyper_parameters": {"preset": "DiT-3D-S/4"}}, tmp_path / "bad.ckpt")
        load_image_dit_checkpoint(tmp_path / "bad.ckpt")


def test_unconditional_generator_defaults_to_no_guidance():
    net = randomize_(build_image_dit("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, num_classes=0), 0.05)
    gen = ImageGenerator(net.eval(), {"num_timesteps": 10}, sampling={"steps": 2})
    assert gen.sampling["guidance"] == 1.0 and gen.sample(2, seed=0).shape == (2, 1, 16, 16)


def test_cache_interval_reuses_branches_between_full_steps(module):
    gen = ImageGenerator.from_lightning(module, sampling={"steps": 6, "guidance": 2.0})
    full = gen.sample(3, label=1, seed=0)
    assert torch.equal(gen.sample(3, label=1, seed=0, cache_interval=1), full)
    (trunk,) = [m for m in gen.net.modules() if hasattr(m, "branch_cache")]
    calls = []
    hook = trunk.blocks[0].attn.register_forward_hook(lambda *_: calls.append(1))
    reused = gen.sample(3, label=1, seed=0, cache_interval=3)
    hook.remove()
    assert len(calls) == 2  # steps 0 and 3 of 6 compute attention; the guided halves share one call
    assert reused.shape == full.shape and torch.isfinite(reused).all() and not torch.equal(reused, full)
    assert trunk.branch_cache is None
    with pytest.raises(ValueError, match="cache_interval"):
        gen.sample(1, cache_interval=0)


def test_grid_and_png(tmp_path):
    x = torch.linspace(-1, 1, 4 * 3 * 5 * 5).reshape(4, 3, 5, 5)
    grid = image_grid(x, per_row=3, pad=1)
    assert grid.shape == (2 * 6 + 1, 3 * 6 + 1, 3) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[-2, 5, 2] == 255  # first pixel -1 -> 0, last pixel +1 -> 255 (tile 4: row 1)
    assert (grid[0] == 0).all() and (grid[7:, 7:] == 0).all()  # padding and the two empty tiles stay black
    from PIL import Image

    path = write_png(tmp_path / "grid.png", x[:, :1], per_row=2, scale=3)
    assert Image.open(path).size == ((2 * 6 + 1) * 3, (2 * 6 + 1) * 3)
    with pytest.raises(ValueError, match="C in"):
        image_grid(torch.zeros(1, 2, 4, 4))
