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

Pixel errors do not say whether a generated frame still shows a *recognisable* digit (a
blurred blob can score a fair MSE). :func:`digit_accuracy` asks the shipped digit
classifier (:mod:`dit3d.metrics.images`, the judge of the image DiT) about each generated
frame: it crops the ``16 x 16`` window centred on the frame's ink centroid
(:func:`digit_crops`) and counts the frames classified as the clip's source digit. The
same score of the ground-truth frames is its ceiling (the crop is not the digit's exact
box).

Unconditional clips have no ground truth and no intended digit. :func:`digit_realism`
judges them as the image DiT's samples are judged: the Frechet distance between the
classifier features of their frames' crops and those of real held-out clips (**not
FID**: the dit3d digit classifier's penultimate features, :mod:`dit3d.metrics.images`),
the share of frames the classifier reads with confidence (top softmax probability above
0.9), and how often a clip's frames agree on one digit. Read them against the same scores
of as many *other* real clips (the distance is biased upwards for few clips).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["PSNR_CAP_DB", "copy_baseline", "digit_accuracy", "digit_crops", "digit_realism", "masked_mse_psnr"]

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


def digit_crops(clips: Tensor | np.ndarray, size: int = 16) -> np.ndarray:
    """The ``size x size`` window of every frame centred on its ink centroid (clamped to the
    canvas; a frame without ink gives its central window).

    The ink of a pixel is :math:`u = (x + 1) / 2` clipped to ``[0, 1]``; the window's corner
    is the centroid minus :math:`(size - 1) / 2`, rounded.

    Shapes:
        clips: ``(n, 1, F, H, W)`` in ``[-1, 1]`` -> ``(n, F, 1, size, size)`` in ``[-1, 1]``

    Example:
        >>> clip = -np.ones((1, 1, 1, 8, 8)); clip[0, 0, 0, 5:7, 1:3] = 1.0
        >>> crop = digit_crops(clip, size=4)[0, 0, 0]
        >>> np.argwhere(crop > 0).min(0).tolist(), np.argwhere(crop > 0).max(0).tolist()  # the middle 2x2
        ([1, 1], [2, 2])
    """
    a = _array(clips, "clips")
    n, C, F, H, W = a.shape
    if C != 1 or not 1 <= size <= min(H, W):
        raise ValueError(f"digit_crops needs grey clips (C = 1) at least {size} pixels wide, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("clips contain NaN or inf; check the sampler (clip_denoised) or the file")
    a = np.clip(a, -1.0, 1.0)
    ink = (a[:, 0] + 1.0) / 2.0  # (n, F, H, W)
    mass = ink.sum(axis=(2, 3))  # (n, F)
    rows = (ink.sum(axis=3) * np.arange(H)).sum(-1) / np.maximum(mass, 1e-12)  # (n, F)
    cols = (ink.sum(axis=2) * np.arange(W)).sum(-1) / np.maximum(mass, 1e-12)
    rows, cols = np.where(mass > 0, rows, (H - 1) / 2), np.where(mass > 0, cols, (W - 1) / 2)
    top = np.clip(np.rint(rows - (size - 1) / 2), 0, H - size).astype(int)
    left = np.clip(np.rint(cols - (size - 1) / 2), 0, W - size).astype(int)
    out = np.empty((n, F, 1, size, size), dtype=np.float32)
    for i in range(n):
        for f in range(F):
            out[i, f, 0] = a[i, 0, f, top[i, f]:top[i, f] + size, left[i, f]:left[i, f] + size]
    return out


def digit_accuracy(clips: Tensor | np.ndarray, labels: Tensor | np.ndarray, frames: Tensor | np.ndarray,
                   classifier: Any = None) -> float:
    """Share of the chosen frames whose centred crop (:func:`digit_crops`) the digit
    classifier assigns to the clip's digit (module doc).

    Args:
        clips: one-digit clips in ``[-1, 1]``.
        labels: the digit of each clip.
        frames: bool, ``True`` = score this frame (e.g. the generated ones).
        classifier: a :class:`~dit3d.metrics.images.DigitClassifier`, its folder, or
            ``None`` for the shipped one; its image size is the crop size.

    Shapes:
        clips: ``(n, 1, F, H, W)``; labels: ``(n,)`` int; frames: ``(n, F)`` bool -> float
    """
    from dit3d.metrics.images import as_classifier, check_labels, predict_labels

    net = as_classifier(classifier)
    crops = digit_crops(clips, net.image_shape[-1])  # (n, F, 1, s, s)
    y = check_labels(labels, crops.shape[0], net.config["num_classes"])  # (n,), checked
    chosen = np.asarray(frames.cpu() if isinstance(frames, Tensor) else frames, dtype=bool)
    if chosen.shape != crops.shape[:2]:
        raise ValueError(f"frames must be (n, F) = {crops.shape[:2]} bool, got {chosen.shape}")
    if not chosen.any():
        raise ValueError("no frame chosen to score")
    pred = predict_labels(crops[chosen], net)  # (frames chosen,)
    truth = np.broadcast_to(y[:, None], chosen.shape)[chosen]
    return float((pred == truth).mean())


def digit_realism(clips: Tensor | np.ndarray, reference: Tensor | np.ndarray, classifier: Any = None,
                  confidence: float = 0.9) -> dict[str, float]:
    r"""How much the frames of clips without ground truth look like digits (module doc).

    With :math:`p_{if}` the classifier's softmax over the crop (:func:`digit_crops`) of frame
    :math:`f` of clip :math:`i` (:math:`F` frames) and :math:`\phi` its penultimate features:

    * ``frechet_digit_distance``: :math:`\lVert\mu_g - \mu_r\rVert^2 + \mathrm{tr}(\Sigma_g
      + \Sigma_r - 2(\Sigma_g\Sigma_r)^{1/2})` of the Gaussians fitted to :math:`\phi` over
      all frames of ``clips`` and of ``reference``
      (:func:`~dit3d.metrics.images.frechet_distance`);
    * ``confident_fraction``: share of frames with :math:`\max_k p_{ifk} >` ``confidence``;
    * ``label_consistency``: :math:`\frac{1}{n}\sum_i \max_k \frac{1}{F}|\{f : \arg\max p_{if} = k\}|`,
      1 when every clip keeps one digit throughout;
    * ``frames``: how many frames of ``clips`` were scored.

    The two shares alone can flatter: the classifier may read a blank canvas with
    confidence, and a blank clip is consistent. The distance is what catches such frames.

    Args:
        clips: generated clips in ``[-1, 1]``.
        reference: real clips to compare with (at least 2 frames in all).
        classifier: a :class:`~dit3d.metrics.images.DigitClassifier`, its folder, or
            ``None`` for the shipped one.
        confidence: the top-probability threshold of ``confident_fraction``.

    Shapes:
        clips: ``(n, 1, F, H, W)``; reference: ``(m, 1, F', H, W)`` -> dict of floats
    """
    import torch

    from dit3d.metrics.images import as_classifier, classifier_features, feature_statistics, frechet_distance

    net = as_classifier(classifier)
    size = net.image_shape[-1]
    crops = digit_crops(clips, size)  # (n, F, 1, s, s)
    n, F = crops.shape[:2]
    flat = crops.reshape(n * F, *crops.shape[2:])  # (n F, 1, s, s)
    ref = digit_crops(reference, size).reshape(-1, *crops.shape[2:])  # (m F', 1, s, s)
    if n * F < 2 or len(ref) < 2:
        raise ValueError(f"digit_realism needs at least 2 frames on each side, got {n * F} and {len(ref)}")
    features = classifier_features(flat, net)  # (n F, feature_dim) float64
    with torch.no_grad():  # the head on the same features: one pass of the network
        prob = torch.softmax(net.head(torch.as_tensor(features, dtype=torch.float32)), -1).numpy()  # (n F, classes)
    labels = prob.argmax(-1).reshape(n, F)  # (n, F)
    agree = [np.bincount(row).max() / F for row in labels]
    distance = frechet_distance(*feature_statistics(features), *feature_statistics(classifier_features(ref, net)))
    return {"frechet_digit_distance": float(distance),
            "confident_fraction": float((prob.max(-1) > confidence).mean()),
            "label_consistency": float(np.mean(agree)), "frames": int(n * F)}
