"""Autoguidance for the DDPM generators (images, point clouds, video): the guided noise
prediction, a guide stored with the model (set_guide, `dit3d export ... --guide`), the
`autoguidance` option, and the refusals."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dit3d.api_images import ImageGenerator
from dit3d.api_video import VideoGenerator
from dit3d.cli import main
from dit3d.models.ddpm_generation import guided_model
from dit3d.testing import randomize_


def image_generator(tiny_ddpm_module, seed: int, **options) -> ImageGenerator:
    """A tiny image DiT with random weights (seeded), 10 diffusion steps, DDIM 3."""
    module = tiny_ddpm_module("image", **{"num_timesteps": 10, **options}).eval()
    randomize_(module.sampling_model, 0.05, seed)
    return ImageGenerator.from_lightning(module, sampling={"steps": 3, "guidance": 1.0})


def image_checkpoints(tiny_ddpm_module, tmp_path) -> dict:
    """Two tiny image-DiT checkpoints with random weights, as `dit3d fit` saves them: "strong" and "weak"."""
    paths = {}
    for name, seed in (("strong", 0), ("weak", 1)):
        module = tiny_ddpm_module("image", num_timesteps=10)
        randomize_(module, 0.05, seed)
        hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in module.hparams.items()}
        paths[name] = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp, "epoch": 1, "global_step": 7}, paths[name])
    return paths


def test_guided_model_extrapolates_from_the_guide_with_the_same_label(tiny_ddpm_module):
    model = randomize_(tiny_ddpm_module("image").sampling_model.eval(), 0.05, 0)
    guide = randomize_(tiny_ddpm_module("image").sampling_model.eval(), 0.05, 1)
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([3, 7]), torch.tensor([4, 9])
    out = guided_model(model, 2, y, 1.0, guide, 2.5)(x, t)
    expected = guide(x, t, y=y) + 2.5 * (model(x, t, y=y) - guide(x, t, y=y))
    torch.testing.assert_close(out, expected)
    assert guided_model(model, 2, y, 1.0, guide, 1.0) is not None  # scale 1: no guide needed in the formula
    torch.testing.assert_close(guided_model(model, 2, y, 1.0, guide, 1.0)(x, t), model(x, t, y=y))
    with pytest.raises(ValueError, match="needs a guide network"):
        guided_model(model, 2, y, 1.0, None, 2.0)
    # with classifier-free guidance both directions add to the conditional prediction
    null = torch.full_like(y, model.null_class)
    both = guided_model(model, 2, y, 3.0, guide, 2.0)(x, t)
    cond, uncond, weak = model(x, t, y=y), model(x, t, y=null), guide(x, t, y=y)
    torch.testing.assert_close(both, cond + 2.0 * (cond - uncond) + 1.0 * (cond - weak))


def test_generator_samples_with_its_guide_and_saves_it(tiny_ddpm_module, tmp_path):
    gen, weak = image_generator(tiny_ddpm_module, 0), image_generator(tiny_ddpm_module, 1)
    plain = gen.sample(3, label=2, seed=0)
    with pytest.raises(ValueError, match="autoguidance needs a guide network, and this model has none"):
        gen.sample(3, label=2, seed=0, autoguidance=2.0)
    gen.set_guide(weak)
    assert torch.equal(gen.sample(3, label=2, seed=0), plain)  # the stored default is 1: off
    guided = gen.sample(3, label=2, seed=0, autoguidance=2.0)
    assert not torch.allclose(guided, plain)
    both = gen.sample(3, label=2, seed=0, autoguidance=2.0, guidance=4.0)
    cfg = gen.sample(3, label=2, seed=0, guidance=4.0)
    assert not torch.allclose(both, guided) and not torch.allclose(both, cfg)
    gen.set_sampling_defaults(autoguidance=2.0).save_pretrained(tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["guide"] is True and config["sampling"]["autoguidance"] == 2.0
    again = ImageGenerator.from_pretrained(tmp_path / "g")
    assert torch.equal(again.sample(3, label=2, seed=0), guided)
    with pytest.raises(ValueError, match="set it to 1 first"):
        again.set_guide(None)


def test_constructor_takes_the_guide_with_a_guided_default(tiny_ddpm_module):
    gen, weak = image_generator(tiny_ddpm_module, 0), image_generator(tiny_ddpm_module, 1)
    sampling = {**gen.sampling, "autoguidance": 2.0}
    built = ImageGenerator(gen.net, gen.diffusion_config, gen.class_names, sampling, guide=weak)
    assert built.guide is not weak.net and built.sampling["autoguidance"] == 2.0
    assert torch.equal(built.sample(3, label=2, seed=0), gen.set_guide(weak).sample(3, label=2, seed=0,
                                                                                     autoguidance=2.0))
    with pytest.raises(ValueError, match="autoguidance needs a guide network"):
        ImageGenerator(gen.net, gen.diffusion_config, gen.class_names, sampling)


def test_bad_guides_are_refused(tiny_ddpm_module):
    gen = image_generator(tiny_ddpm_module, 0)
    with pytest.raises(ValueError, match="must be a ImageDiT built like the model"):
        gen.set_guide(tiny_ddpm_module("image", class_dropout=0.2).sampling_model)
    with pytest.raises(ValueError, match="another diffusion schedule"):
        gen.set_guide(image_generator(tiny_ddpm_module, 1, num_timesteps=20))
    video = VideoGenerator.from_lightning(tiny_ddpm_module("video"))
    with pytest.raises(ValueError, match="must be a VideoDiT"):
        video.set_guide(gen.net)


def test_video_guide_keeps_the_given_frames(tiny_ddpm_module):
    module, weak = tiny_ddpm_module("video", num_timesteps=10), tiny_ddpm_module("video", num_timesteps=10)
    randomize_(module.sampling_model, 0.05, 0)
    randomize_(weak.sampling_model, 0.05, 1)
    gen = VideoGenerator.from_lightning(module, sampling={"steps": 3}).set_guide(VideoGenerator.from_lightning(weak))
    context = torch.rand(2, *gen.video_shape) * 2 - 1
    mask = gen.task_mask("predict")
    clips = gen.complete(context, mask, seed=0, autoguidance=3.0)
    known = gen.net.tokenizer.tokens_to_video(mask[None].expand(2, -1)).expand_as(context)
    assert torch.equal(clips[known], context[known])
    assert not torch.allclose(clips, gen.complete(context, mask, seed=0))


def test_export_image_with_a_guide_checkpoint(tiny_ddpm_module, tmp_path):
    paths = image_checkpoints(tiny_ddpm_module, tmp_path)
    out = tmp_path / "model"
    main(["export", "image", str(paths["strong"]), "-o", str(out), "--steps", "2", "--guidance", "1",
          "--guide", str(paths["weak"]), "--autoguidance", "2"])
    config = json.loads((out / "config.json").read_text())
    assert config["provenance"]["guide"] == str(paths["weak"]) and config["sampling"]["autoguidance"] == 2.0
    gen = ImageGenerator.from_pretrained(out)
    weak = torch.load(paths["weak"], weights_only=True)["state_dict"]
    ema = {k[len("ema_model."):]: v for k, v in weak.items() if k.startswith("ema_model.")}
    assert ema and all(torch.equal(v, ema[k]) for k, v in gen.guide.state_dict().items())
    main(["sample", "image", "--checkpoint", str(out), "-n", "2", "--autoguidance", "1.5", "-o",
          str(tmp_path / "s.npy")])
    assert (tmp_path / "s.npy").is_file()
    with pytest.raises(SystemExit, match="--guide .*missing.ckpt: no such checkpoint"):
        main(["export", "image", str(paths["strong"]), "-o", str(tmp_path / "bad"), "--guide",
              str(tmp_path / "missing.ckpt")])
    with pytest.raises(SystemExit, match="--autoguidance: autoguidance needs a guide network"):
        main(["export", "image", str(paths["strong"]), "-o", str(tmp_path / "bad"), "--autoguidance", "2"])
    assert not (tmp_path / "bad").exists()


def test_export_again_from_a_folder_keeps_the_weights_and_adds_a_guide(tiny_ddpm_module, tmp_path):
    paths = image_checkpoints(tiny_ddpm_module, tmp_path)
    first, weak_folder, again = tmp_path / "first", tmp_path / "weak", tmp_path / "again"
    main(["export", "image", str(paths["strong"]), "-o", str(first), "--steps", "2", "--guidance", "3",
          "--note", "why=first"])
    main(["export", "image", str(paths["weak"]), "-o", str(weak_folder)])
    main(["export", "image", str(first), "-o", str(again), "--guide", str(weak_folder), "--autoguidance", "1.5",
          "--note", "why=guide"])
    old, new = json.loads((first / "config.json").read_text()), json.loads((again / "config.json").read_text())
    before, after = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())  # the model's tensors, unchanged
    assert new["provenance"]["source_folder"] == str(first) and new["provenance"]["why"] == "guide"
    assert new["provenance"]["source_provenance"] == old["provenance"] and old["provenance"]["why"] == "first"
    assert new["provenance"]["guide"] == str(weak_folder)
    # the folder's own defaults stay unless given; the guide default is added; both guidances add up
    assert new["sampling"] == {**old["sampling"], "autoguidance": 1.5}
    gen, weak = ImageGenerator.from_pretrained(again), ImageGenerator.from_pretrained(weak_folder)
    assert all(torch.equal(v, weak.net.state_dict()[k]) for k, v in gen.guide.state_dict().items())
    plain = ImageGenerator.from_pretrained(first).sample(2, label=1, seed=0)
    assert torch.equal(gen.sample(2, label=1, seed=0, autoguidance=1.0), plain)
    assert not torch.allclose(gen.sample(2, label=1, seed=0), plain)
    # --guide none takes it out again: the weights of the first export, its sampling back
    with pytest.raises(SystemExit, match="--guide none: .*add --autoguidance 1"):
        main(["export", "image", str(again), "-o", str(tmp_path / "bad"), "--guide", "none"])
    main(["export", "image", str(again), "-o", str(tmp_path / "bare"), "--guide", "none", "--autoguidance", "1"])
    bare = load_file(tmp_path / "bare" / "model.safetensors")
    assert bare.keys() == before.keys() and all(torch.equal(v, bare[k]) for k, v in before.items())
    assert ImageGenerator.from_pretrained(tmp_path / "bare").guide is None
    with pytest.raises(SystemExit, match="sampling options: eta must be a finite float >= 0, got -1"):
        main(["export", "image", str(first), "-o", str(tmp_path / "bad"), "--eta", "-1"])
    with pytest.raises(SystemExit, match="--note guide: the export records that key itself"):
        main(["export", "image", str(first), "-o", str(tmp_path / "bad"), "--guide", str(weak_folder),
              "--note", "guide=my words"])
    assert not (tmp_path / "bad").exists()
