r"""Judging generated digits with a small shipped classifier: class-conditional accuracy and a
Frechet distance in the classifier's features.

The judge is :class:`DigitClassifier`, a tiny CNN (two 3x3 convolutions with max-pooling,
a 32-wide hidden layer, a 10-way output; ~38k parameters) trained once on the **train**
split of :mod:`dit3d.data.digits` (1,438 images, 16x16, ``[-1, 1]``) with a fixed seed and
shipped in ``data/digits_classifier`` (``config.json`` records its test-split accuracy,
seed, split, training settings and package versions). It was produced by::

    OMP_NUM_THREADS=1 python -m dit3d.metrics.images train-classifier -o data/digits_classifier

Metrics (they judge images, never models):

- **class-conditional accuracy**: the share of generated images that the classifier
  assigns to the class they were generated for (:func:`class_conditional_accuracy`);
  read it against the classifier's own test accuracy, its ceiling on real digits.
- **Frechet distance in the dit3d digit classifier's features**
  (:func:`frechet_classifier_distance`): Gaussians fitted to the classifier's
  penultimate activations (the 32 inputs of its output layer) of generated images and of
  the real **test** split, compared with the Frechet (2-Wasserstein) distance between
  Gaussians

  .. math::
      d^2 = \lVert \mu_g - \mu_r \rVert_2^2 + \operatorname{Tr}\big(\Sigma_g + \Sigma_r
            - 2 (\Sigma_g \Sigma_r)^{1/2}\big)

  the formula of FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium", NeurIPS, arXiv 1706.08500; Dowson & Landau 1982
  for the distance between Gaussians). It is **not FID**: FID uses Inception-v3
  pool features of ImageNet-sized images, and values here are not comparable with any
  published FID. Like FID it is biased upwards for small sample counts, so
  :func:`evaluate_images` also reports the same distance for as many *real* training
  digits (same class counts) against the test split: the floor a perfect generator
  would reach at that sample count.

Nothing is downloaded: the digits ship with scikit-learn (optional extra
``pip install "dit3d[images]"``) and the classifier with this repository.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch
import torch.nn.functional as F
from scipy.linalg import sqrtm
from torch import Tensor, nn

__all__ = ["CLASSIFIER_KIND", "DEFAULT_CLASSIFIER", "DigitClassifier", "as_classifier", "check_labels",
           "class_conditional_accuracy", "classifier_split",
           "classifier_features", "evaluate_images", "feature_statistics", "frechet_classifier_distance",
           "frechet_distance", "load_digit_classifier", "predict_labels", "real_digits", "save_digit_classifier",
           "train_digit_classifier"]

CLASSIFIER_KIND = "digits-classifier"
#: the shipped classifier: ``data/digits_classifier`` in the source repository
DEFAULT_CLASSIFIER = Path(__file__).resolve().parents[2] / "data" / "digits_classifier"
#: the command that produced :data:`DEFAULT_CLASSIFIER` (stored in its config)
TRAIN_COMMAND = "OMP_NUM_THREADS=1 python -m dit3d.metrics.images train-classifier -o data/digits_classifier"
METRIC_NAME = "Frechet distance in the dit3d digit classifier's features (not FID)"

ImageArray = Tensor | np.ndarray


class DigitClassifier(nn.Module):
    """Tiny CNN for ``(B, C, S, S)`` images in ``[-1, 1]``: conv3x3 - ReLU - maxpool2,
    conv3x3 - ReLU - maxpool2, linear - ReLU (the **features**), linear (the logits).

    Args:
        image_size: side ``S`` (divisible by 4).
        in_channels: image channels ``C``.
        num_classes: output classes.
        widths: channels of the two convolutions.
        feature_dim: width of the penultimate layer, the feature space of the Frechet distance.

    Shapes:
        x: ``(B, C, S, S)`` -> logits ``(B, num_classes)``; :meth:`features`: ``(B, feature_dim)``

    Example:
        >>> net = DigitClassifier()
        >>> net(torch.zeros(2, 1, 16, 16)).shape, net.features(torch.zeros(2, 1, 16, 16)).shape
        (torch.Size([2, 10]), torch.Size([2, 32]))
    """

    def __init__(self, image_size: int = 16, in_channels: int = 1, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32), feature_dim: int = 32) -> None:
        super().__init__()
        if image_size % 4 or image_size < 4:
            raise ValueError(f"image_size must be a positive multiple of 4 (two 2x poolings), got {image_size}")
        w1, w2 = (int(w) for w in widths)
        self.config = dict(image_size=int(image_size), in_channels=int(in_channels), num_classes=int(num_classes),
                           widths=[w1, w2], feature_dim=int(feature_dim))
        self.conv1 = nn.Conv2d(in_channels, w1, 3, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.fc = nn.Linear(w2 * (image_size // 4) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, S, S)`` of the images this classifier takes."""
        c = self.config
        return (c["in_channels"], c["image_size"], c["image_size"])

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after ReLU): the input of the output layer."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, w1, S/2, S/2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, w2, S/4, S/4)
        return F.relu(self.fc(h.flatten(1)))  # (B, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, num_classes)


# --------------------------------------------------------------------------- data


def real_digits(split: str, image_size: int = 16, resize: str = "bilinear", test_fraction: float = 0.2,
                seed: int = 0) -> tuple[Tensor, Tensor]:
    """Images ``(n, 1, S, S)`` in ``[-1, 1]`` and labels ``(n,)`` of one split of
    :class:`~dit3d.data.digits.DigitsDataset` (train 1,438 / test 359 by default)."""
    from dit3d.data.digits import DigitsDataset

    ds = DigitsDataset(split, image_size, resize, test_fraction, seed)
    return ds.images, ds.labels


def train_digit_classifier(seed: int = 0, epochs: int = 60, batch_size: int = 64, lr: float = 2e-3,
                           weight_decay: float = 1e-4, max_shift: int = 1, image_size: int = 16,
                           resize: str = "bilinear", test_fraction: float = 0.2, split_seed: int = 0,
                           feature_dim: int = 32, progress: bool = False) -> tuple[DigitClassifier, dict[str, Any]]:
    """Train :class:`DigitClassifier` on the train split of the digits; report test accuracy.

    AdamW with a cosine learning-rate decay, cross-entropy, random translations of up to
    ``max_shift`` pixels as augmentation, in a Lightning ``Trainer``
    (:func:`dit3d.models.digit_classifier.fit_digit_classifier`; ``progress`` shows its
    progress bar). Initialisation, shuffling and augmentation all come from ``seed``
    (torch's global random state is restored afterwards), so on one CPU thread a rerun on
    the same machine gives the same weights.

    Returns:
        the classifier (eval mode) and a JSON-ready record: accuracies, seed, split,
        training settings, wall time and package versions.
    """
    from dit3d.models.digit_classifier import fit_digit_classifier

    train_x, train_y = real_digits("train", image_size, resize, test_fraction, split_seed)
    test_x, test_y = real_digits("test", image_size, resize, test_fraction, split_seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the caller's global random state stays as it was
        torch.manual_seed(seed)
        net = DigitClassifier(image_size=image_size, feature_dim=feature_dim)
        fit_digit_classifier(net, train_x, train_y, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                             weight_decay=weight_decay, max_shift=max_shift, progress=progress)
    info = {
        "test_accuracy": round(class_conditional_accuracy(test_x, test_y, net), 4),
        "train_accuracy": round(class_conditional_accuracy(train_x, train_y, net), 4),
        "seed": seed,
        "data": {"source": "sklearn.datasets.load_digits", "split": "dit3d.data.digits.digits_split",
                 "trained_on": "train", "accuracy_on": "test", "num_train": len(train_y), "num_test": len(test_y),
                 "image_size": image_size, "resize": resize, "test_fraction": test_fraction,
                 "split_seed": split_seed},
        "training": {"epochs": epochs, "batch_size": batch_size, "optimizer": "AdamW", "lr": lr,
                     "lr_schedule": "cosine", "weight_decay": weight_decay, "augmentation":
                     f"random translation up to {max_shift} px", "threads": torch.get_num_threads(),
                     "seconds": round(time.perf_counter() - start, 1)},
        "features": "penultimate layer (ReLU outputs feeding the last linear layer)",
        "versions": _versions(),
    }
    return net, info


# --------------------------------------------------------------------------- save / load


def save_digit_classifier(net: DigitClassifier, directory: str | os.PathLike, info: dict[str, Any] | None = None,
                          command: str | None = None) -> Path:
    """Write ``config.json`` (architecture, ``info``, the producing command) and
    ``model.safetensors`` atomically (:func:`dit3d.pretrained.save_pretrained`)."""
    from dit3d.pretrained import save_pretrained

    extra = dict(info or {})
    if command is not None:
        extra["command"] = command
    clash = set(extra) & {"classifier", "kind"}
    if clash:
        raise ValueError(f"info keys {sorted(clash)} are reserved; rename them")
    return save_pretrained(directory, CLASSIFIER_KIND, {"classifier": net.config, **extra}, net.state_dict())


def load_digit_classifier(path: str | os.PathLike | None = None) -> DigitClassifier:
    """The classifier in ``path`` (default: the shipped :data:`DEFAULT_CLASSIFIER`), in eval
    mode; its config (test accuracy, seed, split...) is on ``.info`` and the folder on ``.path``."""
    from dit3d.pretrained import PretrainedError, load_pretrained, load_state_strict

    directory = Path(path) if path is not None else DEFAULT_CLASSIFIER
    if path is None and not directory.is_dir():
        raise PretrainedError(f"the shipped digit classifier is not at {directory}: it lives in the source "
                              f"repository's data/ folder (install with pip install -e .), or train one with "
                              f"`{TRAIN_COMMAND}` and pass its folder")
    config, weights = load_pretrained(directory, CLASSIFIER_KIND)
    if "classifier" not in config:
        raise PretrainedError(f"{directory}: config.json lacks 'classifier'; retrain with `{TRAIN_COMMAND}`")
    try:
        net = DigitClassifier(**config["classifier"])
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{directory}: bad classifier config ({e})") from None
    load_state_strict(net, weights, str(directory))
    net.info = {k: v for k, v in config.items() if k not in ("kind", "classifier")}
    net.path = directory
    return net.eval()


def as_classifier(classifier: DigitClassifier | str | os.PathLike | None) -> DigitClassifier:
    """``classifier`` itself, or the one loaded from its folder (``None``: the shipped one)."""
    return classifier if isinstance(classifier, nn.Module) else load_digit_classifier(classifier)


# --------------------------------------------------------------------------- metrics


def _images(images: ImageArray, net: DigitClassifier, name: str = "images") -> Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images).detach().float().cpu()
    if x.dim() != 4 or tuple(x.shape[1:]) != net.image_shape or len(x) == 0:
        raise ValueError(f"{name} must be (n >= 1, {', '.join(map(str, net.image_shape))}) images in [-1, 1] "
                         f"(what the digits data and the digit DiT use), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf; check the sampler (clip_denoised) or the file")
    return x


@torch.no_grad()
def classifier_features(images: ImageArray, classifier: DigitClassifier | str | os.PathLike | None = None,
                        batch_size: int = 512) -> np.ndarray:
    """Penultimate features ``(n, feature_dim)`` float64 of ``(n, C, S, S)`` images in ``[-1, 1]``."""
    net = as_classifier(classifier)
    x = _images(images, net)
    return torch.cat([net.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


@torch.no_grad()
def predict_labels(images: ImageArray, classifier: DigitClassifier | str | os.PathLike | None = None,
                   batch_size: int = 512) -> np.ndarray:
    """Arg-max class ``(n,)`` int64 of each image."""
    net = as_classifier(classifier)
    x = _images(images, net)
    return torch.cat([net(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)]).numpy()


def check_labels(labels: ImageArray | Sequence[int], n: int, num_classes: int) -> np.ndarray:
    """``labels`` as ``(n,)`` int64 class indices in ``[0, num_classes)``, or a ``ValueError`` saying what is off."""
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be ({n},) integers, one per image, got {y.shape} {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def class_conditional_accuracy(images: ImageArray, labels: ImageArray | Sequence[int],
                               classifier: DigitClassifier | str | os.PathLike | None = None) -> float:
    """Share of ``images`` that the classifier assigns to their intended ``labels``.

    Args:
        images: ``(n, C, S, S)`` in ``[-1, 1]``.
        labels: ``(n,)`` the class each image was generated for.
        classifier: a :class:`DigitClassifier`, a folder, or ``None`` for the shipped one.
    """
    net = as_classifier(classifier)
    pred = predict_labels(images, net)
    return float((pred == check_labels(labels, len(pred), net.config["num_classes"])).mean())


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` of ``(n, F)`` features (n >= 2)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features (n >= 2, F) for a covariance, got {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    r"""Squared Frechet distance between :math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)`:
    :math:`\lVert\mu_1 - \mu_2\rVert^2 + \operatorname{Tr}(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2})`
    (Dowson & Landau 1982; the formula FID uses, Heusel et al. 2017).

    The matrix square root is :func:`scipy.linalg.sqrtm`, with the usual safeguards of
    FID implementations: if it is not finite (singular covariances, e.g. from dead ReLU
    features or fewer samples than features), ``eps`` is added to both diagonals and it
    is recomputed; an imaginary part from rounding is dropped if the diagonal's is below
    ``1e-3`` and raises otherwise; the result is clamped at 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = len(mu1)
    if mu1.shape != mu2.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"means must be (F,) and covariances (F, F) alike, got {mu1.shape}, {mu2.shape}, "
                         f"{s1.shape}, {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise ValueError("feature statistics contain NaN or inf")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "matrix is singular": handled below
        covmean = sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = sqrtm((s1 + offset) @ (s2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError(f"the matrix square root is not finite even with eps={eps} added to the covariances; "
                         "use more samples or a larger eps")
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the matrix square root has an imaginary component {imag:.3g}: the covariances are "
                             "badly conditioned; use more samples")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_classifier_distance(images: ImageArray, reference: ImageArray | None = None,
                                classifier: DigitClassifier | str | os.PathLike | None = None) -> float:
    """Frechet distance in the dit3d digit classifier's features (**not FID**) between
    ``images`` and ``reference`` (default: the real test split, 359 digits).

    See :func:`frechet_distance`. Biased upwards for small ``n``: compare with the value
    for as many real digits (:func:`evaluate_images` reports it).
    """
    net = as_classifier(classifier)
    ref = classifier_split(net, "test")[0] if reference is None else reference
    return frechet_distance(*feature_statistics(classifier_features(images, net)),
                            *feature_statistics(classifier_features(ref, net)))


def classifier_split(net: DigitClassifier, split: str) -> tuple[Tensor, Tensor]:
    """:func:`real_digits` of ``split`` as ``net`` was trained and tested on: the image size,
    resize, test fraction and split seed its ``info["data"]`` records (the defaults for a
    classifier saved without them), so a classifier is never judged on its own training digits."""
    data = getattr(net, "info", {}).get("data", {})
    return real_digits(split, net.config["image_size"], data.get("resize", "bilinear"),
                       data.get("test_fraction", 0.2), data.get("split_seed", 0))


def _real_like(labels: np.ndarray, net: DigitClassifier, seed: int) -> Tensor:
    """Real **train** digits with the same class counts as ``labels`` (seeded, without
    replacement within a class as long as the class has enough images)."""
    x, y = classifier_split(net, "train")
    rng = np.random.default_rng(seed)
    picks = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        pool = np.flatnonzero(y.numpy() == c)
        picks[where] = rng.choice(pool, size=len(where), replace=len(where) > len(pool))
    return x[torch.from_numpy(picks)]


def evaluate_images(images: ImageArray, labels: ImageArray | Sequence[int],
                    classifier: DigitClassifier | str | os.PathLike | None = None, seed: int = 0) -> dict[str, Any]:
    """Class-conditional accuracy and the Frechet classifier distance of generated digits, with
    the same numbers for as many real training digits (the floor at this sample count).

    Args:
        images: ``(n, 1, 16, 16)`` generated digits in ``[-1, 1]``.
        labels: ``(n,)`` the class each was generated for.
        classifier: :class:`DigitClassifier`, folder, or ``None`` for the shipped one.
        seed: picks the real training digits of the baseline.

    Returns:
        ``class_accuracy``, ``per_class_accuracy`` (class -> share), ``frechet_classifier_distance``,
        ``real_baseline`` (both metrics for real train digits with the same class counts),
        and ``protocol`` (metric definitions, classifier folder and accuracy, sample count,
        seed, versions).
    """
    net = as_classifier(classifier)
    x = _images(images, net)
    y = check_labels(labels, len(x), net.config["num_classes"])
    if len(x) < 2:
        raise ValueError("need at least 2 images for a covariance; sample more")
    pred = predict_labels(x, net)
    test_x, _ = classifier_split(net, "test")
    ref_stats = feature_statistics(classifier_features(test_x, net))
    real = _real_like(y, net, seed)
    info = getattr(net, "info", {})
    result = {
        "class_accuracy": round(float((pred == y).mean()), 4),
        "per_class_accuracy": {str(c): round(float((pred[y == c] == c).mean()), 4) for c in np.unique(y)},
        "frechet_classifier_distance": round(frechet_distance(*feature_statistics(classifier_features(x, net)),
                                                              *ref_stats), 4),
        "real_baseline": {
            "class_accuracy": round(class_conditional_accuracy(real, y, net), 4),
            "frechet_classifier_distance": round(frechet_distance(
                *feature_statistics(classifier_features(real, net)), *ref_stats), 4),
            "what": "the same metrics for real TRAIN digits with the generated class counts (seeded): the floor "
                    "at this sample count",
        },
        "protocol": {
            "class_accuracy": "share of samples the classifier assigns to the class they were generated for",
            "frechet_classifier_distance": f"{METRIC_NAME}: squared Frechet distance (Heusel et al. 2017 formula) "
                                           "between Gaussians fitted to penultimate features of the samples and of "
                                           f"the {len(test_x)} real test-split digits",
            "classifier": {"path": str(getattr(net, "path", "in memory")),
                           "test_accuracy": info.get("test_accuracy"), "seed": info.get("seed"),
                           "feature_dim": net.config["feature_dim"]},
            "num_samples": len(x),
            "class_counts": {str(c): int((y == c).sum()) for c in np.unique(y)},
            "num_reference": len(test_x),
            "reference": "dit3d.data.digits test split",
            "seed": seed,
            "versions": _versions(),
        },
    }
    return result


def _versions() -> dict[str, str]:
    import dit3d

    out = {"dit3d": dit3d.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "python": platform.python_version()}
    with contextlib.suppress(ImportError):
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    return out


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    """``python -m dit3d.metrics.images train-classifier -o DIR``: train and save the judge."""
    parser = argparse.ArgumentParser(prog="python -m dit3d.metrics.images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-classifier", help="train the digit classifier on the train split and save it")
    p.add_argument("-o", "--output", required=True, help="pretrained folder to write (e.g. data/digits_classifier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    net, info = train_digit_classifier(seed=args.seed, epochs=args.epochs, progress=not args.quiet)
    command = " ".join(["python -m dit3d.metrics.images", *(argv if argv is not None else sys.argv[1:])])
    threads = os.environ.get("OMP_NUM_THREADS")
    path = save_digit_classifier(net, args.output, info, (f"OMP_NUM_THREADS={threads} " if threads else "") + command)
    print(f"test accuracy {info['test_accuracy']:.4f} (train {info['train_accuracy']:.4f}) in "
          f"{info['training']['seconds']} s; wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
