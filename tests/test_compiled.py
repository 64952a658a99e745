"""Compiling trunk networks for sampling and training (dit3d.nn.compiled)."""
import shutil
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from dit3d.nn import DiTBlock, quantize_int8
from dit3d.nn.compiled import compile_for_sampling, compile_for_training, cpp_compiler, is_compiled
from dit3d.testing import randomize_

needs_compiler = pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")


def block_and_inputs():
    block = randomize_(DiTBlock(dim=32, num_heads=4), std=0.1).eval()
    g = torch.Generator().manual_seed(0)
    return block, torch.randn(2, 8, 32, generator=g), torch.randn(2, 32, generator=g)


@needs_compiler
def test_compiled_block_matches_eager_and_keeps_its_parameter_names():
    block, x, c = block_and_inputs()
    quantize_int8(block)  # the int8 layers' quantization is what compiling fuses most
    names = list(block.state_dict())
    with torch.no_grad():
        eager = block(x, c)
        assert compile_for_sampling(block) is block and is_compiled(block)
        assert compile_for_sampling(block) is block  # a second call changes nothing
        compiled = block(x, c)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert list(block.state_dict()) == names  # in place: saves and loads as the eager network


def test_refuses_training_mode():
    block, _, _ = block_and_inputs()
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        compile_for_sampling(block.train())
    assert not is_compiled(block)


def test_refuses_without_a_cpp_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cpp_compiler() is None
    block, _, _ = block_and_inputs()
    with pytest.raises(RuntimeError, match="install g\\+\\+ or clang\\+\\+, or sample without compiling"):
        compile_for_sampling(block)
    assert not is_compiled(block)


def test_cxx_comes_first(monkeypatch):
    monkeypatch.setenv("CXX", "true")  # any program on PATH stands in for a compiler here
    assert cpp_compiler() == shutil.which("true")


@needs_compiler
def test_compiled_for_training_gives_the_eager_gradients():
    block, x, c = block_and_inputs()
    block.train()
    eager_out = block(x, c)
    eager_out.square().sum().backward()
    eager = {n: p.grad.clone() for n, p in block.named_parameters()}
    block.zero_grad(set_to_none=True)
    assert compile_for_training(block) is block and is_compiled(block)
    assert compile_for_training(block) is block  # a second call changes nothing
    out = block(x, c)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager_out, rtol=1e-4, atol=1e-5)
    for name, p in block.named_parameters():
        torch.testing.assert_close(p.grad, eager[name], rtol=1e-4, atol=1e-5, msg=name)


def test_training_compile_refuses_without_a_cpp_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    block, _, _ = block_and_inputs()
    with pytest.raises(RuntimeError, match="or train without compiling"):
        compile_for_training(block.train())
    assert not is_compiled(block)


class FittingTrainer:
    """Stands in for an attached Trainer running ``fit`` (what ``configure_model`` asks)."""
    state = SimpleNamespace(fn=TrainerFn.FITTING)


@pytest.mark.parametrize("kind", ["dit3d", "image", "video"])
@pytest.mark.parametrize("compile_model", [False, True])
def test_ddpm_modules_compile_their_network_when_a_fit_starts(monkeypatch, tiny_ddpm_module, kind,
                                                              compile_model):
    monkeypatch.setenv("CXX", "true")  # configure_model only compiles in place; nothing is built until a call
    m = tiny_ddpm_module(kind, compile_model=compile_model)
    names = list(m.state_dict())
    m.configure_model()
    assert not is_compiled(m.model)  # no Trainer: loading, validating or sampling stays eager
    m._trainer = FittingTrainer()
    m.configure_model()
    assert is_compiled(m.model) is compile_model
    assert not is_compiled(m.ema_model)  # validation and sampling use the eager EMA copy
    assert list(m.state_dict()) == names  # checkpoints keep their keys


def test_a_checkpoint_trained_compiled_loads_without_a_compiler(monkeypatch, tmp_path, tiny_ddpm_module):
    from lightning.pytorch import Trainer

    from dit3d.models import DiT3DModule

    m = tiny_ddpm_module("dit3d", compile_model=True)
    path = tmp_path / "m.ckpt"
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(m)
    trainer.save_checkpoint(path)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    loaded = DiT3DModule.load_from_checkpoint(path)  # Lightning calls configure_model here
    assert loaded.hparams.compile_model and not is_compiled(loaded.model)


@pytest.mark.slow
@needs_compiler
def test_fit_with_compile_model_validates_and_trains(tmp_path, tiny_ddpm_module):
    """The real hook order: sanity validation (inference mode, eval), a train step, the EMA update."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    data = [{"points": torch.randn(64, 3), "label": torch.tensor(0)} for _ in range(4)]
    m = tiny_ddpm_module("dit3d", compile_model=True)
    before = [p.detach().clone() for p in m.model.parameters()]
    Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            num_sanity_val_steps=1, limit_val_batches=1, default_root_dir=tmp_path).fit(
        m, DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))
    assert is_compiled(m.model) and not is_compiled(m.ema_model)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.model.parameters()))  # it trained
