"""ShapeNet PC15k loader and data module on small trees written by the tests."""
import numpy as np
import pytest
import torch

from dit3d.data.pc15k import EpochDrawSampler, ShapeNetPC15k, resolve_category
from dit3d.data.pointcloud_io import PointCloudFileError
from dit3d.data.pointclouds import PointCloudDataModule

CHAIR, AIRPLANE = "03001627", "02691156"


def write_tree(root, synset=CHAIR, counts=(3, 1, 2), seed=0, scale=1.0, shift=0.0):
    """Clouds (15000, 3) with known values; returns {split: stacked array} in file order."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in zip(("train", "val", "test"), counts):
        folder = root / synset / split
        folder.mkdir(parents=True)
        clouds = (shift + scale * rng.standard_normal((n, 15000, 3))).astype(np.float32)
        for i, c in enumerate(clouds):
            np.save(folder / f"shape{i:02d}.npy", c)
        out[split] = clouds
    return out


@pytest.fixture
def tree(tmp_path):
    chairs = write_tree(tmp_path, CHAIR, seed=1, scale=0.3, shift=1.0)
    planes = write_tree(tmp_path, AIRPLANE, counts=(2, 1, 1), seed=2, scale=0.5)
    return tmp_path, chairs, planes


def test_categories_by_name_or_synset():
    assert resolve_category("chair") == ("chair", CHAIR)
    assert resolve_category(AIRPLANE) == ("airplane", AIRPLANE)
    assert resolve_category("Car") == ("car", "02958343")
    assert resolve_category("12345678") == ("12345678", "12345678")  # an unlisted synset is its own name
    with pytest.raises(ValueError, match="unknown category 'sofa-bed'.*8-digit synset"):
        resolve_category("sofa-bed")


def test_batches_global_statistics_and_denormalisation(tree):
    root, chairs, planes = tree
    dm = PointCloudDataModule(str(root), ["chair", AIRPLANE], batch_size=4, num_points=64)
    dm.setup("fit")
    train = np.concatenate([chairs["train"], planes["train"]])  # (5, 15000, 3), label order
    stats = dm.stats
    np.testing.assert_allclose(stats["mean"], train.reshape(-1, 3).astype(np.float64).mean(0), rtol=1e-9, atol=1e-12)
    assert stats["std"] == pytest.approx(float(train.astype(np.float64).std()), rel=1e-9)
    assert stats["normalization"] == "global" and stats["num_shapes"] == 5
    assert dm.state_dict()["normalization_stats"] == stats

    batches = list(dm.train_dataloader())
    assert [len(b["label"]) for b in batches] == [4, 1]
    b = batches[0]
    assert set(b) == {"points", "label"} and b["points"].shape == (4, 64, 3) and b["points"].dtype == torch.float32
    assert b["label"].dtype == torch.long
    assert sorted(torch.cat([x["label"] for x in batches]).tolist()) == [0, 0, 0, 1, 1]
    # Each draw is 64 distinct points of the first 10,000 of its cloud, in the normalised frame.
    ds = dm.datasets["train"]
    for index in range(len(ds)):
        item = ds[index]
        raw = dm.denormalize(item["points"]).double().numpy()
        first = ds.points[index, :10_000].astype(np.float64)
        match = np.abs(raw[:, None, :] - first[None]).max(-1).argmin(1)
        np.testing.assert_allclose(raw, first[match], atol=1e-5)
        assert len(set(match.tolist())) == 64
        assert item["label"].item() == (0 if index < 3 else 1)
    # Validation clouds use the training statistics.
    val = dm.datasets["val"]
    assert val.stats["mean"] == stats["mean"] and val.stats["std"] == stats["std"]
    np.testing.assert_allclose(val.normalize(chairs["val"][:1]), (chairs["val"][:1] - stats["mean"]) / stats["std"],
                               rtol=1e-5, atol=1e-5)


def test_draws_are_seeded_and_change_every_epoch(tree):
    root = tree[0]

    def epochs(seed, n=2):
        dm = PointCloudDataModule(str(root), ["chair"], batch_size=2, num_points=32, seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [torch.cat([b["points"] for b in loader]) for _ in range(n)]

    a, b = epochs(0), epochs(0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # reproducible
    assert not torch.equal(a[0], a[1])  # a new draw (and order) each epoch
    assert not torch.equal(a[0], epochs(1, 1)[0])
    # set_epoch (what Lightning calls) pins the epoch.
    sampler = EpochDrawSampler(5, seed=3)
    sampler.set_epoch(7)
    assert list(sampler) == list(sampler) and {e for _, e in sampler} == {7}
    assert sorted(i for i, _ in sampler) == list(range(5))


def test_val_and_test_draws_are_fixed(tree):
    dm = PointCloudDataModule(str(tree[0]), ["chair"], batch_size=8, num_points=16)
    dm.setup("test")
    first = [b["points"] for b in dm.test_dataloader()]
    again = [b["points"] for b in dm.test_dataloader()]
    assert len(first) == 1 and first[0].shape == (2, 16, 3) and torch.equal(first[0], again[0])


def test_references_are_the_last_5000_points(tree):
    root, chairs, _ = tree
    dm = PointCloudDataModule(str(root), ["chair"])
    refs = dm.reference_clouds("test")
    assert refs.shape == (2, 5000, 3) and refs.dtype == np.float32
    np.testing.assert_array_equal(refs, chairs["test"][:, 10_000:])
    sub = dm.reference_clouds("test", num_points=2048)
    assert sub.shape == (2, 2048, 3)
    assert np.isin(sub[0, :, 0], chairs["test"][0, 10_000:, 0]).all()
    np.testing.assert_array_equal(sub, dm.reference_clouds("test", num_points=2048))  # seeded
    normed = dm.reference_clouds("test", normalized=True)
    np.testing.assert_allclose(dm.denormalize(normed), refs, atol=1e-5)
    assert dm.reference_labels("test").tolist() == [0, 0]


def test_per_shape_and_none(tree):
    root, chairs, _ = tree
    ds = ShapeNetPC15k(root, ["chair"], "train", num_points=100, normalization="per-shape")
    x = chairs["train"][1].astype(np.float64)
    assert ds.stats["normalization"] == "per-shape"
    np.testing.assert_allclose(ds.shape_mean[1], x.mean(0), atol=1e-9)
    assert ds.shape_std[1] == pytest.approx(x.std(), rel=1e-9)
    item = ds[1]["points"].double().numpy()
    assert np.abs(item.mean(0)).max() < 0.3 and 0.7 < item.std() < 1.3  # roughly standardised
    back = ds.denormalize(item, indices=[1])
    first = chairs["train"][1, :10_000].astype(np.float64)
    assert np.abs(back[:, None, :] - first[None]).max(-1).min(1).max() < 1e-5  # every point is one of the first 10k
    with pytest.raises(ValueError, match="pass indices"):
        ds.denormalize(item)
    raw = ShapeNetPC15k(root, ["chair"], "train", num_points=10_000, normalization="none")
    assert np.isin(raw[0]["points"].numpy(), chairs["train"][0, :10_000]).all()
    assert sorted(raw[0]["points"][:, 0].tolist()) == sorted(chairs["train"][0, :10_000, 0].tolist())


def test_train_subset_and_checkpoint_state(tree):
    root, chairs, planes = tree
    dm = PointCloudDataModule(str(root), ["chair", "airplane"], train_subset=1)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 2  # first cloud of each category
    state = dm.state_dict()
    fresh = PointCloudDataModule(str(root), ["chair", "airplane"])
    fresh.load_state_dict(state)  # e.g. restored from a checkpoint, before any data is read
    x = torch.zeros(1, 4, 3)
    assert torch.allclose(fresh.denormalize(x), torch.tensor(state["normalization_stats"]["mean"]).float())
    with pytest.raises(ValueError, match="normalised with 'global'"):
        PointCloudDataModule(str(root), normalization="none").load_state_dict(state)


def test_epoch_draws_through_a_lightning_fit(tree):
    from lightning import LightningModule, Trainer

    seen = []

    class Probe(LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            seen.append((self.current_epoch, batch["points"].clone(), batch["label"].clone()))
            return (self.w - batch["points"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = PointCloudDataModule(str(tree[0]), ["chair"], batch_size=3, num_points=16)
    Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0).fit(Probe(), dm)
    assert [e for e, _, _ in seen] == [0, 1]
    assert seen[0][1].shape == (3, 16, 3) and not torch.equal(seen[0][1], seen[1][1])


# ----------------------------------------------------------------------------- errors


def test_missing_root_category_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected <root>/<synset>/\{train,val,test\}"):
        ShapeNetPC15k(tmp_path / "nowhere")
    write_tree(tmp_path, AIRPLANE, counts=(1, 0, 0))
    with pytest.raises(FileNotFoundError, match=rf"no folder .*{CHAIR} for category 'chair'.*\['{AIRPLANE}'\]"):
        ShapeNetPC15k(tmp_path, ["chair"])
    with pytest.raises(FileNotFoundError, match=r"holds no \.npy clouds"):
        ShapeNetPC15k(tmp_path, ["airplane"], "val")
    (tmp_path / AIRPLANE / "val").rmdir()
    with pytest.raises(FileNotFoundError, match=r"split folder .*val is missing"):
        ShapeNetPC15k(tmp_path, ["airplane"], "val")
    with pytest.raises(ValueError, match="unknown category"):
        PointCloudDataModule(str(tmp_path), ["chiar"])
    with pytest.raises(ValueError, match="unknown split"):
        ShapeNetPC15k(tmp_path, ["airplane"], "training")


@pytest.mark.parametrize("content, match", [
    (np.zeros((14_999, 3), np.float32), r"shape00\.npy: has 14999 points per cloud, fewer than the 15000"),
    (np.full((15_000, 3), np.nan, np.float32), r"shape00\.npy: contains NaN or inf \(15000 points; first at point 0\)"),
    (np.zeros((15_000, 2), np.float32), r"shape00\.npy: has shape \(15000, 2\), expected \(N, 3\)"),
    (b"not an array", r"shape00\.npy: cannot read it as a \.npy array"),
    (np.array([{"a": 1}], dtype=object), r"shape00\.npy: cannot read it as a \.npy array"),
])
def test_bad_clouds_name_the_file(tmp_path, content, match):
    folder = tmp_path / CHAIR / "train"
    folder.mkdir(parents=True)
    path = folder / "shape00.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)
    with pytest.raises(PointCloudFileError, match=match):
        ShapeNetPC15k(tmp_path, ["chair"])


def test_bad_arguments(tree):
    root = str(tree[0])
    with pytest.raises(ValueError, match=r"num_points must be an int in \[1, 10000\]"):
        PointCloudDataModule(root, num_points=12_000)
    with pytest.raises(ValueError, match="normalization must be one of"):
        PointCloudDataModule(root, normalization="unit")
    with pytest.raises(ValueError, match="batch_size"):
        PointCloudDataModule(root, batch_size=0)
    with pytest.raises(ValueError, match="categories is empty"):
        PointCloudDataModule(root, categories=[])
    with pytest.raises(ValueError, match=r"num_points must be an int in \[1, 5000\]"):
        PointCloudDataModule(root).reference_clouds("test", num_points=6000)
    with pytest.raises(ValueError, match="stats must be a training set's global statistics"):
        ShapeNetPC15k(root, ["chair"], "val", stats={"normalization": "global", "mean": [0, 0], "std": 1.0})
