"""Video DiT (VDT mask modelling): shapes, layouts per block, the given-token flag, masked conditioning
leaving the given frames exactly unchanged, training, the CPU config, two Lightning steps; optional digit
labels with label dropout and classifier-free guidance."""
from pathlib import Path

import pytest
import torch
import yaml

from dit3d.models import VideoDiT, VideoDiTModule, sample_videos, task_mask
from dit3d.nn import DiTBlock, FactorisedDiTBlock, sincos_3d
from dit3d.objectives import GaussianDiffusion
from dit3d.testing import randomize_

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> VideoDiT:
    args = dict(trunk="DiT-Mini", patch_size=4, num_frames=4, image_size=8, depth=2, hidden_size=24, num_heads=4)
    return VideoDiT(**{**args, **kw})


def clips(B: int = 2, F: int = 4, S: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(B, 1, F, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_positions_and_zero_output_at_init():
    net = tiny()
    assert net.tokenizer.grid_size == (4, 2, 2) and net.video_shape == (1, 4, 8, 8)
    assert torch.equal(net.dit.pos_embed, sincos_3d((4, 2, 2), 24))
    assert net.dit.in_dim == 16 + 1 and net.dit.out_dim == 16  # pixels + the given flag in, pixels out
    out = net(clips(), torch.tensor([0, 999]))
    assert out.shape == (2, 1, 4, 8, 8) and out.abs().max() == 0
    big = tiny(num_frames=8, time_patch=2, image_size=16, in_channels=3)
    assert big(torch.randn(1, 3, 8, 16, 16), torch.tensor([5])).shape == (1, 3, 8, 16, 16)
    with pytest.raises(ValueError, match="divisible by 6"):
        tiny(hidden_size=32)
    with pytest.raises(ValueError, match="does not take window_blocks"):
        tiny(window_blocks=[0])
    with pytest.raises(ValueError, match="num_classes must be an int >= 0"):
        tiny(num_classes=-1)


def test_attention_layout_per_block():
    assert all(isinstance(b, FactorisedDiTBlock) for b in tiny().dit.trunk.blocks)
    assert all(type(b) is DiTBlock for b in tiny(attention="joint").dit.trunk.blocks)
    mixed = tiny(attention=["joint", "factorised"]).dit.trunk.blocks
    assert type(mixed[0]) is DiTBlock and isinstance(mixed[1], FactorisedDiTBlock)
    assert mixed[1].axes == ((1, 2), (0,))
    with pytest.raises(ValueError, match="one per block"):
        tiny(attention=["joint"])
    with pytest.raises(ValueError, match="one per block"):
        tiny(attention="axial")


def test_the_given_flag_reaches_the_network_as_a_learned_embedding():
    net = randomize_(tiny(), std=0.1).eval()
    x, t = clips(), torch.tensor([10, 500])
    none = torch.zeros(2, 16, dtype=torch.bool)
    some = none.clone()
    some[:, :4] = True  # the first frame is given
    with torch.no_grad():
        assert torch.equal(net(x, t), net(x, t, none))
        assert not torch.allclose(net(x, t, some), net(x, t, none))
    with pytest.raises(ValueError, match="one flag per token"):
        net(x, t, torch.zeros(2, 15, dtype=torch.bool))


@pytest.mark.parametrize("attention", ["factorised", "joint"])
@pytest.mark.parametrize("task", ["predict", "backward", "interpolate", "complete"])
def test_masked_conditioning_leaves_the_given_frames_exactly_unchanged(task, attention):
    net = randomize_(tiny(attention=attention), std=0.1)
    diffusion = GaussianDiffusion(20)
    context = clips(3)
    given = task_mask(task, net.tokenizer.grid_size, None if task == "complete" else 1)
    out = sample_videos(net, diffusion, 3, context, given, steps=4, eta=1.0,
                        generator=torch.Generator().manual_seed(0))
    known = net.tokenizer.tokens_to_video(given.expand(3, -1)).expand_as(out)
    assert known.any() and (~known).any()
    assert torch.equal(out[known], context[known])  # bit for bit
    assert not torch.equal(out[~known], context[~known]) and out.abs().max() <= 1.0
    ddpm = sample_videos(net, diffusion, 3, context, given, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    assert torch.equal(ddpm[known], context[known])


def test_samples_depend_on_the_given_frames_only_through_what_is_given():
    net = randomize_(tiny(), std=0.1)
    diffusion = GaussianDiffusion(20)
    given = task_mask("predict", net.tokenizer.grid_size, 2)
    known = net.tokenizer.tokens_to_video(given[None])[0]  # (1, F, H, W)
    a, b = clips(1, seed=1), clips(1, seed=2)
    b = torch.where(known, a, b)  # same given frames, different hidden ones
    draw = lambda ctx: sample_videos(net, diffusion, 1, ctx, given, steps=3,  # noqa: E731
                                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw(a), draw(b))
    c = a.clone()
    c[:, :, 0] = -c[:, :, 0]  # change a given frame: the generated ones change
    assert not torch.equal(draw(c)[:, :, 2:], draw(a)[:, :, 2:])
    uncond = sample_videos(net, diffusion, 2, steps=2, generator=torch.Generator().manual_seed(0))
    assert uncond.shape == (2, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="need the context clips"):
        sample_videos(net, diffusion, 1, None, given, steps=2)
    with pytest.raises(ValueError, match="bool token mask"):
        sample_videos(net, diffusion, 1, a, given[:5], steps=2)


def module(trainer: bool = False, **kw) -> VideoDiTModule:
    args = dict(patch_size=4, num_frames=4, image_size=8, depth=2, hidden_size=24, num_heads=4, lr=3e-3,
                ema_decay=0.9, num_timesteps=100)
    m = VideoDiTModule(**{**args, **kw})
    if not trainer:
        m.log = lambda *a, **k: None  # no trainer attached
    return m


def moving_square_batch(B: int = 8) -> dict:
    """A bright 4x4 square stepping one patch to the right per frame... wrapping round the 8x8 canvas."""
    video = -torch.ones(B, 1, 4, 8, 8)
    for i in range(B):
        r = 4 * (i % 2)
        for f in range(4):
            c = 4 * ((f + i // 2) % 2)
            video[i, 0, f, r:r + 4, c:c + 4] = 1.0
    return {"video": video}


def test_training_reduces_the_masked_loss_and_updates_the_ema():
    torch.manual_seed(0)
    m = module()
    batch = moving_square_batch()
    opt = m.configure_optimizers()["optimizer"]

    def fixed_loss(net) -> float:
        with torch.no_grad():
            return m.masked_loss(net, batch["video"], torch.Generator().manual_seed(0)).item()

    before = fixed_loss(m.model)
    ema_before = [p.clone() for p in m.ema_model.parameters()]
    for step in range(40):
        opt.zero_grad()
        m.training_step(batch, step).backward()
        opt.step()
        m.update_ema(step)
    assert fixed_loss(m.model) < 0.7 * before
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, m.ema_model.parameters()))
    assert m.sampling_model is m.ema_model


def test_module_checks_tasks_batches_and_rebuilds_from_hparams():
    with pytest.raises(ValueError, match="needs at least 3 time slots"):
        module(num_frames=4, time_patch=2)
    only_predict = module(num_frames=4, time_patch=2, task_weights={"predict": 1.0})
    assert only_predict.model.tokenizer.grid_size == (2, 2, 2)
    with pytest.raises(ValueError, match="'video'"):
        module().training_step({"image": torch.zeros(2, 1, 8, 8)}, 0)
    m = randomize_(module(), std=0.05)
    again = VideoDiTModule(**dict(m.hparams))
    again.load_state_dict(m.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    given = task_mask("predict", (4, 2, 2))
    ctx = clips(2)
    assert torch.equal(again.sample(2, ctx, given, steps=3, generator=g()), m.sample(2, ctx, given, steps=3,
                                                                                      generator=g()))
    assert m.diffusion_config == {"num_timesteps": 100, "schedule": "linear", "prediction": "eps",
                                  "beta_start": 1e-4, "beta_end": 0.02}


def test_cpu_config_builds_the_module_and_data():
    cfg = yaml.safe_load((ROOT / "configs/video/moving_digits_cpu.yaml").read_text())
    assert cfg["model"]["class_path"] == "dit3d.models.VideoDiTModule"
    assert cfg["data"]["class_path"] == "dit3d.data.MovingDigitsDataModule"
    m = VideoDiTModule(**cfg["model"]["init_args"])
    assert m.model.video_shape == (1, 8, 32, 32) and m.model.tokenizer.num_tokens == 512
    assert 0.5 < sum(p.numel() for p in m.model.parameters()) / 1e6 < 2.0
    pytest.importorskip("sklearn")
    from dit3d.data import MovingDigitsDataModule

    dm = MovingDigitsDataModule(**cfg["data"]["init_args"])
    assert dm.video_shape == m.model.video_shape


def test_two_lightning_steps_on_moving_digits(tmp_path):
    pytest.importorskip("sklearn")
    from lightning.pytorch import Trainer

    from dit3d.data import MovingDigitsDataModule

    m = module(trainer=True, num_frames=4, image_size=16, patch_size=8)
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    ema_before = [p.clone() for p in m.ema_model.parameters()]
    dm = MovingDigitsDataModule(batch_size=4, num_frames=4, image_size=16, digit_size=8, num_train=8, num_test=4)
    trainer.fit(m, dm)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, m.ema_model.parameters()))
    assert "val/loss" in trainer.callback_metrics and "val/loss_ema" in trainer.callback_metrics


# --------------------------------------------------------------------------- digit labels, guidance


def cond(**kw) -> VideoDiT:
    """Tiny class-conditional net: depth 1, 8x8 patches, 4 frames of 16x16."""
    args = dict(trunk="DiT-Mini", patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                num_classes=10)
    return VideoDiT(**{**args, **kw})


def test_conditional_forward_labels_and_config():
    net = randomize_(cond(), std=0.1).eval()
    assert net.null_class == 10 and net.dit.y_embed is not None
    assert net.config["num_classes"] == 10 and net.config["class_dropout"] == 0.1
    x, t = clips(2, S=16), torch.tensor([3, 7])
    with torch.no_grad():
        out = net(x, t, y=torch.tensor([3, 4]))
        assert out.shape == (2, 1, 4, 16, 16)
        assert not torch.allclose(out, net(x, t, y=torch.tensor([5, 4])))  # the label matters
        assert torch.equal(net(x, t), net(x, t, y=torch.full((2,), 10)))  # no label = the null class
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        net(x, t, y=torch.tensor([3]))
    with pytest.raises(ValueError, match="labels must lie in"):
        net(x, t, y=torch.tensor([3, 11]))
    # an unconditional net keeps its old config (no label keys) and rejects labels
    plain = cond(num_classes=0)
    assert plain.null_class is None and "num_classes" not in plain.config and "class_dropout" not in plain.config
    assert VideoDiT(**plain.config).config == plain.config
    with pytest.raises(ValueError, match="unconditional VideoDiT"):
        plain(x, t, y=torch.tensor([3, 4]))
    assert VideoDiT(**net.config).config == net.config


def digits_batch(B: int = 4, K: int = 1) -> dict:
    return {"video": clips(B, S=16), "label": torch.arange(B * K).reshape(B, K) % 10}


def test_label_dropout_happens_in_training_only():
    m = module(patch_size=8, image_size=16, depth=1, num_timesteps=10, num_classes=10, class_dropout=1.0)
    seen = []
    for net in (m.model, m.ema_model):
        forward = net.forward
        net.forward = lambda x, t, given=None, y=None, _f=forward: seen.append(y) or _f(x, t, given, y)
    batch = digits_batch()
    m.training_step(batch, 0)
    assert len(seen) == 1 and torch.equal(seen[0], torch.full((4,), 10))  # all dropped to the null class
    seen.clear()
    m.validation_step(batch, 0)
    assert len(seen) == 2 and all(torch.equal(y, torch.tensor([0, 1, 2, 3])) for y in seen)  # never dropped
    seen.clear()
    keep = module(patch_size=8, image_size=16, depth=1, num_timesteps=10, num_classes=10, class_dropout=0.0)
    keep.model.forward = lambda x, t, given=None, y=None, _f=keep.model.forward: seen.append(y) or _f(x, t, given, y)
    keep.training_step(batch, 0)
    assert torch.equal(seen[0], torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="one digit per clip"):
        m.training_step(digits_batch(K=2), 0)
    with pytest.raises(ValueError, match="expects batches with 'label'"):
        m.training_step({"video": batch["video"]}, 0)
    uncond = module(patch_size=8, image_size=16, depth=1, num_timesteps=10)
    assert uncond.unpack(digits_batch(K=2))[1] is None  # labels are not read without num_classes


def test_conditional_module_trains_and_rebuilds_from_hparams():
    torch.manual_seed(0)
    m = randomize_(module(patch_size=8, image_size=16, depth=1, num_timesteps=10, num_classes=10), std=0.05)
    assert m.hparams.num_classes == 10 and m.model.null_class == 10
    m.training_step(digits_batch(), 0).backward()
    assert m.model.dit.y_embed.embedding_table.weight.grad[:10].abs().sum() > 0  # the labels reach the loss
    again = VideoDiTModule(**dict(m.hparams))
    again.load_state_dict(m.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = m.sample(2, steps=2, generator=g(), label=torch.tensor([3, 7]), guidance=2.0)
    assert torch.equal(a, again.sample(2, steps=2, generator=g(), label=torch.tensor([3, 7]), guidance=2.0))


@pytest.mark.parametrize("task", ["predict", "interpolate", "complete"])
def test_guided_sampling_keeps_the_given_frames_exactly(task):
    net = randomize_(cond(), std=0.1)
    diffusion = GaussianDiffusion(10)
    context = clips(3, S=16)
    given = task_mask(task, net.tokenizer.grid_size, None if task == "complete" else 1)
    known = net.tokenizer.tokens_to_video(given.expand(3, -1)).expand_as(context)
    draw = lambda **kw: sample_videos(net, diffusion, 3, context, given, steps=3, eta=1.0,  # noqa: E731
                                      generator=torch.Generator().manual_seed(0), **kw)
    guided = draw(label=torch.tensor([1, 2, 3]), guidance=3.0)
    assert torch.equal(guided[known], context[known])  # bit for bit
    ddpm = sample_videos(net, diffusion, 3, context, given, sampler="ddpm", label=4, guidance=3.0,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(ddpm[known], context[known])
    plain = draw(label=torch.tensor([1, 2, 3]))
    assert not torch.equal(guided[~known], plain[~known])  # guidance changes the generated tokens
    assert torch.equal(draw(), draw(label=None, guidance=1.0))


def test_labels_and_guidance_need_a_conditional_model():
    net, diffusion = cond(num_classes=0), GaussianDiffusion(10)
    with pytest.raises(ValueError, match="classifier-free guidance needs a class-conditional"):
        sample_videos(net, diffusion, 1, steps=2, guidance=2.0)
    with pytest.raises(ValueError, match="label given to an unconditional"):
        sample_videos(net, diffusion, 1, steps=2, label=3)
    conditional = cond()
    with pytest.raises(ValueError, match="needs a label to guide towards"):
        sample_videos(conditional, diffusion, 1, steps=2, guidance=2.0)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        sample_videos(conditional, diffusion, 2, steps=2, label=10)
    with pytest.raises(ValueError, match="label must be an int or a"):
        sample_videos(conditional, diffusion, 2, steps=2, label=torch.tensor([1, 2, 3]))


def test_conditional_cpu_config_differs_only_in_labels_loss_weights_stop_and_output_paths():
    """The conditional config is the unconditional one plus labels, without the Min-SNR loss
    weights (measured worse for it) and stopped by time as the unconditional one was then;
    both keep their step 3,000 for autoguidance."""
    old = yaml.safe_load((ROOT / "configs/video/moving_digits_cpu.yaml").read_text())
    new = yaml.safe_load((ROOT / "configs/video/moving_digits_cond_cpu.yaml").read_text())
    plain = {k: v for k, v in old["model"]["init_args"].items() if k != "min_snr_gamma"}
    assert old["model"]["init_args"]["min_snr_gamma"] == 5.0 and "min_snr_gamma" not in new["model"]["init_args"]
    assert new["model"]["init_args"] == {**plain, "num_classes": 10, "class_dropout": 0.1}
    assert new["data"] == old["data"] and new["data"]["init_args"]["num_digits"] == 1
    paths = yaml.safe_load(yaml.safe_dump(new["trainer"]).replace("video_moving_digits_cond_cpu", "video_moving_digits_cpu"))
    assert paths.pop("max_time") == "00:00:30:00" and old["trainer"].pop("max_steps") == 7500
    guide = old["trainer"]["callbacks"][-1]  # both runs keep their step 3,000 as an autoguidance guide
    assert guide["init_args"]["dirpath"] == "runs/video_moving_digits_cpu/guide"
    assert paths == old["trainer"]
    assert new["trainer"]["default_root_dir"] == "runs/video_moving_digits_cond_cpu"
    m = VideoDiTModule(**new["model"]["init_args"])
    assert m.model.null_class == 10 and m.model.video_shape == (1, 8, 32, 32)
    text = (ROOT / "configs/video/moving_digits_cond_cpu.yaml").read_text()
    assert "classifier-free guidance" in text and "TODO" not in text  # the header records what was measured
    assert "data/video_digits_cond_cpu" in text and (ROOT / "data/video_digits_cond_cpu/config.json").is_file()


def test_conditional_cpu_config_parses_with_lightning_cli(tmp_path):
    pytest.importorskip("sklearn")
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    config = ROOT / "configs/video/moving_digits_cond_cpu.yaml"
    cli = LightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=["-c", str(config), f"--trainer.default_root_dir={tmp_path}",
                                        "--trainer.logger=false", "--trainer.callbacks=[]"])
    assert isinstance(cli.model, VideoDiTModule) and cli.model.hparams.num_classes == 10
    assert cli.model.hparams.class_dropout == 0.1 and cli.datamodule.hparams.num_digits == 1
