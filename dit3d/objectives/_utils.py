"""Small private helpers: input checks, seeded random draws, model calls, progress bars."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

ModelFn = Callable[..., Tensor]
_T = TypeVar("_T")


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf, naming the offending argument."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values; check the data pipeline "
                         "(padded entries should be finite too, e.g. zeros)")


def check_option(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` if a string option is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")


def check_batch_vector(t: Tensor, batch_size: int, name: str = "t") -> None:
    """Raise ``ValueError`` unless ``t`` has shape ``(batch_size,)``."""
    if not isinstance(t, Tensor) or tuple(t.shape) != (batch_size,):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a tensor of shape ({batch_size},), one entry per "
                         f"sample, got {shape}")


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a per-sample ``(B,)`` vector to ``(B, 1, ..., 1)`` with ``ndim`` axes."""
    return v.reshape(v.shape + (1,) * (ndim - v.dim()))


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    # A generator only draws on its own device; draw there and move, so the same seed
    # gives the same numbers whatever device the data lives on.
    return generator.device if generator is not None else device


def randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype) -> Tensor:
    """Standard normal draw of ``shape`` on ``device``, repeatable through ``generator``."""
    out = torch.randn(tuple(shape), generator=generator, dtype=dtype,
                      device=_draw_device(generator, device))
    return out.to(device)


def rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device,
         dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform :math:`[0, 1)` draw of ``shape`` on ``device``."""
    out = torch.rand(tuple(shape), generator=generator, dtype=dtype,
                     device=_draw_device(generator, device))
    return out.to(device)


def randint(high: int, shape: Sequence[int], generator: torch.Generator | None,
            device: torch.device) -> Tensor:
    """Uniform integers in ``[0, high)`` of ``shape`` on ``device`` (int64)."""
    out = torch.randint(0, high, tuple(shape), generator=generator,
                        device=_draw_device(generator, device))
    return out.to(device)


def call_model(model_fn: ModelFn, x: Tensor, t: Tensor, mask: Tensor | None,
               **model_kwargs: Any) -> Tensor:
    """Call ``model_fn(x, t, **model_kwargs)``, adding ``mask=`` when given, and check the output.

    The mask is forwarded because the network needs it too (attention must not look at
    padding); passing it once to the objective keeps the two from drifting apart.
    """
    if mask is not None:
        if "mask" in model_kwargs:
            raise ValueError("pass the padding mask once, as the objective's `mask=` argument; "
                             "it is forwarded to model_fn")
        model_kwargs["mask"] = mask
    out = model_fn(x, t, **model_kwargs)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model_fn must return a tensor of x_t's shape {tuple(x.shape)}, got {shape}")
    return out


def progress_bar(items: Iterable[_T], progress: bool, desc: str, total: int | None = None) -> Iterable[_T]:
    """Wrap ``items`` in a tqdm bar when ``progress`` is true."""
    return tqdm(items, desc=desc, total=total, disable=not progress, leave=False)


def sample_device(noise: Tensor | None, mask: Tensor | None,
                  device: torch.device | str | None) -> torch.device:
    """Where a sampler should work: the noise's device, else the mask's, else ``device`` or CPU."""
    if noise is not None:
        return noise.device
    if mask is not None:
        return mask.device
    return torch.device(device) if device is not None else torch.device("cpu")
