r"""Scores of generated clips against the ground truth they were conditioned on.

For a conditioned task (prediction, interpolation, completion) every generated clip has
a ground truth: the test clip whose given part it was shown. Errors are measured on the
**generated** pixels only (the given ones are copied and would flatter the score), on
the intensity scale :math:`u = (x + 1) / 2 \in [0, 1]` of clips stored in
:math:`[-1, 1]`:

.. math::
    \mathrm{MSE}_i = \frac{\sum_{p \in G_i} (u_{ip} - \hat u_{ip})^2}{|G_i|}, \qquad
    \mathrm{PSNR}_i = 10 \log_{10} \frac{1}{\mathrm{MSE}_i}\ \mathrm{dB},

per clip :math:`i` with generated pixels :math:`G_i`; the report gives the means over
clips (PSNR averaged per clip, as video-prediction papers do) and the MSE per frame
index. A clip reproduced exactly would have infinite PSNR; it is capped at 100 dB.

:func:`copy_baseline` is the reference to read them against: every generated frame is
replaced by the nearest wholly given frame in time (the earlier one on ties), or by a
blank canvas when no frame is wholly given. A model that has learnt the motion beats it.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

__all__ = ["PSNR_CAP_DB", "copy_baseline", "masked_mse_psnr"]

#: PSNR of an exact reconstruction (MSE 0) is reported as this
PSNR_CAP_DB = 100.0


def _array(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.ndim != 5:
        raise ValueError(f"{name} must be clips (n, C, F, H, W), got shape {a.shape}")
    return a


def masked_mse_psnr(pred: Tensor | np.ndarray, truth: Tensor | np.ndarray,
                    generated: Tensor | np.ndarray) -> dict[str, float | list[float] | int]:
    """MSE and PSNR of ``pred`` against ``truth`` over the generated pixels (module doc).

    Args:
        pred: generated clips in ``[-1, 1]``.
        truth: the ground-truth clips, same shape.
        generated: bool, ``True`` = a pixel the model generated; broadcastable to the clips
            (e.g. ``(n, 1, F, H, W)``).

    Shapes:
        pred, truth: ``(n, C, F, H, W)`` -> ``{"mse", "psnr", "mse_per_frame" (F floats, NaN
        where no clip generated that frame), "clips"}``

    Example:
        >>> truth = np.zeros((1, 1, 2, 2, 2)); pred = truth.copy(); pred[0, 0, 1] = 1.0  # off by 0.5 in u
        >>> gen = np.array([False, True]).reshape(1, 1, 2, 1, 1)
        >>> r = masked_mse_psnr(pred, truth, gen); round(r["mse"], 3), round(r["psnr"], 2)
        (0.25, 6.02)
    """
    p, t = _array(pred, "pred"), _array(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must have the same shape")
    g = np.broadcast_to(np.asarray(generated.cpu() if isinstance(generated, Tensor) else generated, dtype=bool),
                        p.shape)
    err = ((np.clip(p, -1, 1) - np.clip(t, -1, 1)) / 2.0) ** 2 * g  # (n, C, F, H, W) on the [0, 1] scale
    count = g.sum(axis=(1, 2, 3, 4))  # (n,)
    if (count == 0).any():
        raise ValueError("some clips have no generated pixel; score only clips the model generated something in")
    mse = err.sum(axis=(1, 2, 3, 4)) / count  # (n,)
    psnr = np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
    per_frame_count = g.sum(axis=(0, 1, 3, 4))  # (F,)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_frame = err.sum(axis=(0, 1, 3, 4)) / per_frame_count
    return {"mse": float(mse.mean()), "psnr": float(np.minimum(psnr, PSNR_CAP_DB).mean()),
            "mse_per_frame": [float(v) for v in per_frame], "clips": int(p.shape[0])}


def copy_baseline(truth: Tensor | np.ndarray, given_frames: Tensor | np.ndarray) -> np.ndarray:
    """Every frame of ``truth`` replaced by its nearest wholly given frame (earlier on ties);
    a blank canvas (``-1``) where a clip has no given frame. Given frames stay as they are.

    Shapes:
        truth: ``(n, C, F, H, W)``; given_frames: ``(n, F)`` bool -> ``(n, C, F, H, W)``

    Example:
        >>> truth = np.arange(4.0).reshape(1, 1, 4, 1, 1)
        >>> copy_baseline(truth, np.array([[True, False, False, True]]))[0, 0, :, 0, 0].tolist()
        [0.0, 0.0, 3.0, 3.0]
    """
    t = _array(truth, "truth")
    given = np.asarray(given_frames.cpu() if isinstance(given_frames, Tensor) else given_frames, dtype=bool)
    if given.shape != (t.shape[0], t.shape[2]):
        raise ValueError(f"given_frames must be (n, F) = {(t.shape[0], t.shape[2])}, got {given.shape}")
    out = np.full_like(t, -1.0)
    frames = np.arange(t.shape[2])
    for i in range(t.shape[0]):
        src = np.flatnonzero(given[i])
        if len(src) == 0:
            continue
        nearest = src[np.argmin(np.abs(frames[:, None] - src[None, :]), axis=1)]  # (F,), earliest on ties
        out[i] = t[i][:, nearest]
    return out
