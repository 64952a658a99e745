"""Compiling trunk networks for sampling (dit3d.nn.compiled)."""
import shutil

import pytest
import torch

from dit3d.nn import DiTBlock, quantize_int8
from dit3d.nn.compiled import compile_for_sampling, cpp_compiler, is_compiled
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
