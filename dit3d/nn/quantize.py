"""Int8 weights and activations for the trunk's dense layers, for faster sampling on CPUs.

Vector-wise absmax quantization (Dettmers et al. 2022, LLM.int8(), Sec. 3.1, without the
mixed-precision outlier split): each output channel of a weight and each token of an
activation get their own scale, the product runs as an int8 x int8 -> int32 matmul
(``torch._int_mm``; oneDNN VNNI kernels on x86 CPUs) and is rescaled to float:

.. math::
    s^W_j = \\max_k |W_{jk}| / 127,\\quad s^X_i = \\max_k |X_{ik}| / 127,\\quad
    Y_{ij} \\approx s^X_i s^W_j \\sum_k \\mathrm{round}(X_{ik} / s^X_i)\\,\\mathrm{round}(W_{jk} / s^W_j) + b_j

Only the large token-wise layers of the trunk's blocks are converted (attention ``qkv``
and ``proj``, MLP ``fc1`` and ``fc2``): they hold nearly all the FLOPs, while the
conditioning MLPs, the adaLN modulation and the tokenizers' embeddings and heads stay in
float, since they set the gates and scales every token passes through. An inference-only
CPU option: the converted layers refuse gradients and other devices, and cannot be saved as
the float model. It pays for wide layers: the per-token quantization is memory-bound work
that the int8 matmul must win back (measured in the README's benchmarks: DiT-S widths and
up sample about 1.7x faster, 96-wide models not at all).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Int8Linear", "check_float", "quantize_int8", "quantized_layers"]

#: names of the dense layers :func:`quantize_int8` converts inside each trunk block
TOKEN_LAYERS = ("qkv", "proj", "fc1", "fc2")


def _absmax_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of ``x (M, K)`` as int8 with one float scale per row ``(M, 1)``."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127.0  # (M, 1)
    q = x / scale  # (M, K)
    q.round_()  # in place: measured 5x faster than torch.round(x / scale) at 4096 x 1536 on two threads
    return q.to(torch.int8), scale


class Int8Linear(nn.Module):
    """Inference copy of an ``nn.Linear`` with int8 weights (per output channel) and int8
    activations (per token, quantized at each call).

    Args:
        linear: the float layer to convert (its weights are copied; it is left unchanged).

    Shapes:
        x: ``(..., in_features)`` float -> ``(..., out_features)`` in ``x``'s dtype
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = _absmax_int8(linear.weight.detach().float())
        self.register_buffer("weight_int8", weight)  # (N, K)
        self.register_buffer("weight_scale", scale.T.contiguous())  # (1, N)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)  # (N,) or None

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            raise RuntimeError(f"Int8Linear runs on the CPU only, got input on {x.device}; sample on the CPU or "
                               "reload the model without quantize_int8()")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("Int8Linear is inference-only (its rounding has no gradient); run it under "
                               "torch.no_grad(), or train the float model")
        lead = x.shape[:-1]
        xq, x_scale = _absmax_int8(x.reshape(-1, self.in_features).float())  # (M, K) int8, (M, 1)
        acc = torch._int_mm(xq, self.weight_int8.T)  # (M, N) int32; a transposed view is the fast layout
        y = acc.float().mul_(x_scale).mul_(self.weight_scale)  # (M, N); in place: this is memory-bound
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*lead, self.out_features).to(x.dtype)  # (..., N)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_int8(model: nn.Module) -> int:
    """Replace, in place, the ``qkv``/``proj``/``fc1``/``fc2`` ``nn.Linear`` layers of
    every trunk block inside ``model`` with :class:`Int8Linear`; returns how many (layers
    converted before are left as they are, so a second call returns 0).

    Blocks are found by type (:class:`~dit3d.nn.DiTBlock` and
    :class:`~dit3d.nn.FactorisedDiTBlock`), so any model built on the shared trunk works.

    Raises:
        ValueError: ``model`` holds no trunk block, or is in training mode (the int8 layers
            have no gradients: call ``model.eval()`` first).

    Example:
        >>> from dit3d.nn import DiTBlock
        >>> block = DiTBlock(dim=32, num_heads=4).eval()
        >>> quantize_int8(block)
        4
        >>> type(block.mlp.fc1).__name__
        'Int8Linear'
    """
    from dit3d.nn.blocks import DiTBlock, FactorisedDiTBlock

    if model.training:
        raise ValueError("quantize_int8 converts models for inference only; call model.eval() first")
    blocks = [m for m in model.modules() if isinstance(m, (DiTBlock, FactorisedDiTBlock))]
    if not blocks:
        raise ValueError(f"{type(model).__name__} holds no DiTBlock or FactorisedDiTBlock: nothing to quantize")
    count = 0
    for block in blocks:
        for parent in list(block.modules()):
            for name in TOKEN_LAYERS:
                child = getattr(parent, name, None)
                if type(child) is nn.Linear:
                    setattr(parent, name, Int8Linear(child))
                    count += 1
    return count


def quantized_layers(model: nn.Module) -> int:
    """How many :class:`Int8Linear` layers ``model`` holds (0: a float model)."""
    return sum(isinstance(m, Int8Linear) for m in model.modules())


def check_float(model: nn.Module) -> None:
    """Raise a ``ValueError`` if ``model`` holds int8 layers: they cannot be saved as the
    float model they came from."""
    if quantized_layers(model):
        raise ValueError("this generator was quantized to int8 (quantize_int8()); reload the float model with "
                         "from_pretrained and save it before quantizing")
