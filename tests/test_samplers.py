import pytest
import torch

from dit3d.data import SizeGroupedBatchSampler


def test_every_item_once_per_epoch_and_sizes_grouped():
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(3, 30, (1000,), generator=g)
    sampler = SizeGroupedBatchSampler(sizes, batch_size=16, pool_batches=10, seed=1)
    epoch0, epoch1 = list(sampler), list(sampler)
    for batches in (epoch0, epoch1):
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert len(batches) == len(sampler)
        spread = torch.tensor([sizes[b].max() - sizes[b].min() for b in batches], dtype=torch.float)
        assert spread.mean() < 3  # random batches of 16 would spread over ~24
    assert epoch0 != epoch1  # a new shuffle each epoch
    assert list(SizeGroupedBatchSampler(sizes, 16, 10, seed=1)) == epoch0  # repeatable


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        SizeGroupedBatchSampler(torch.ones(3), batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        SizeGroupedBatchSampler(torch.ones(0), batch_size=2)


def test_qm9_datamodule_groups_by_size(qm9_root):
    from dit3d.data import QM9DataModule

    dm = QM9DataModule(batch_size=32, train_subset=2000, group_by_size=True)
    real = padded = 0
    for batch in dm.train_dataloader():
        n = torch.bincount(batch.batch)
        real, padded = real + int(n.sum()), padded + int(n.max()) * len(n)
    assert real == sum(dm.train_dataset[i].num_nodes for i in range(2000))
    assert 1 - real / padded < 0.05
