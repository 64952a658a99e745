"""scikit-learn's digits as images: scaling, resizing, the documented split, the data module."""
import sys

import numpy as np
import pytest
import torch

from dit3d.data import digits as digits_mod
from dit3d.data.digits import DigitsDataModule, DigitsDataset, digit_images, digits_split

PER_CLASS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
TEST_PER_CLASS = [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # floor(0.2 n_c + 1/2), as documented


@pytest.fixture(scope="module")
def raw():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    d = sklearn_datasets.load_digits()
    return d.images, d.target


def test_all_digits_as_16x16_images_in_minus_one_one(raw):
    images, labels = digit_images()
    assert images.shape == (1797, 1, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert np.bincount(labels.numpy()).tolist() == PER_CLASS
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0
    assert torch.equal(labels, torch.from_numpy(raw[1]))


def bilinear_x2(a: np.ndarray) -> np.ndarray:
    """8 -> 16 per axis with half-pixel centres: out[2k] = a[k-1]/4 + 3a[k]/4, out[2k+1] = 3a[k]/4 + a[k+1]/4,
    clamped at the borders."""
    p = np.concatenate([a[:1], a, a[-1:]])  # edge-replicated
    out = np.empty(16)
    out[0::2] = 0.25 * p[:-2] + 0.75 * p[1:-1]
    out[1::2] = 0.75 * p[1:-1] + 0.25 * p[2:]
    return out


def test_bilinear_upsampling_matches_the_documented_formula(raw):
    images, _ = digit_images(16, "bilinear")
    for i in (0, 100, 1796):
        u = raw[0][i] / 16.0
        rows = np.stack([bilinear_x2(r) for r in u])  # (8, 16)
        expected = np.stack([bilinear_x2(c) for c in rows.T]).T  # (16, 16)
        assert np.allclose(images[i, 0].numpy(), 2 * expected - 1, atol=1e-6)


def test_padding_centres_the_digit_on_background(raw):
    images, _ = digit_images(16, "pad")
    assert torch.allclose(images[:, 0, 4:12, 4:12], torch.from_numpy(raw[0] / 8.0 - 1.0).float())
    border = images.clone()
    border[:, :, 4:12, 4:12] = -1
    assert (border == -1).all()
    assert digit_images(32, "pad")[0].shape == (1797, 1, 32, 32)
    assert digit_images(32, "bilinear")[0].shape == (1797, 1, 32, 32)
    assert torch.allclose(digit_images(8, "bilinear")[0], digit_images(8, "pad")[0])


def test_split_sizes_stratification_and_determinism(raw):
    labels = raw[1]
    split = digits_split(labels)
    train, test = split["train"], split["test"]
    assert (len(train), len(test)) == (1438, 359)
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).tolist() == list(range(1797))
    assert np.bincount(labels[test]).tolist() == TEST_PER_CLASS
    for c, n in enumerate(PER_CLASS):  # every class within half an image of 20 % in the test split
        assert abs(np.sum(labels[test] == c) - 0.2 * n) <= 0.5
    again = digits_split(labels)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = digits_split(labels, seed=1)
    assert not np.array_equal(other["test"], test) and len(other["test"]) == 359
    assert len(digits_split(labels, test_fraction=0.5)["test"]) == sum(int(np.floor(0.5 * n + 0.5)) for n in PER_CLASS)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        digits_split(labels, test_fraction=1.0)


def test_datasets_follow_the_split(raw):
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert (len(train), len(test)) == (1438, 359)
    item = test[5]
    assert item["image"].shape == (1, 16, 16) and item["label"].dtype == torch.int64
    idx = test.indices[5]
    assert int(item["label"]) == raw[1][idx]
    assert torch.equal(item["image"], digit_images()[0][idx])
    with pytest.raises(ValueError, match="split"):
        DigitsDataset("val")


def test_data_module_batches(raw):
    dm = DigitsDataModule(batch_size=32, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (32, 1, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == torch.int64
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert torch.equal(next(iter(dm.train_dataloader()))["label"], batch["label"])  # seeded shuffle
    assert len(dm.train_dataloader()) == 45 and len(dm.val_dataloader()) == 12  # 1438 / 32, 359 / 32
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["label"], dm.test_dataset.labels[:32])  # validation = test split, in order
    assert DigitsDataModule(batch_size=32, drop_last=True).train_dataloader().__len__() == 44
    assert dm.num_classes == 10 and dm.class_names[3] == "3" and dm.image_shape == (1, 16, 16)
    assert DigitsDataModule(image_size=32).image_shape == (1, 32, 32)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="resize"):
        DigitsDataModule(resize="nearest")
    with pytest.raises(ValueError, match="must be even"):
        DigitsDataModule(image_size=15, resize="pad")
    with pytest.raises(ValueError, match=">= 8"):
        DigitsDataModule(image_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        DigitsDataModule(batch_size=0)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    digits_mod._load_digits.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if not installed
    try:
        with pytest.raises(ImportError, match=r"dit3d\[images\]"):
            digit_images()
    finally:
        digits_mod._load_digits.cache_clear()
