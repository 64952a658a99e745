import pytest
import torch

from dit3d.nn import window_attention_mask, window_ids, window_partition, window_reverse


@pytest.mark.parametrize("grid,window", [((6,), (3,)), ((4, 6), (2, 3)), ((8, 8, 8), (4, 4, 4))])
def test_partition_round_trip(grid, window):
    T = torch.tensor(grid).prod().item()
    x = torch.randn(2, T, 5)
    w = window_partition(x, grid, window)
    assert w.shape == (2 * T // torch.tensor(window).prod().item(), torch.tensor(window).prod().item(), 5)
    assert torch.equal(window_reverse(w, grid, window), x)


def test_partition_groups_the_right_tokens_and_never_mixes_samples():
    grid, window = (4, 4), (2, 2)
    x = torch.arange(2 * 16).reshape(2, 16, 1).float()  # token value = sample*16 + row-major index
    w = window_partition(x, grid, window)[..., 0]
    assert w[0].tolist() == [0, 1, 4, 5]      # sample 0, top-left window
    assert w[1].tolist() == [2, 3, 6, 7]      # sample 0, top-right window
    assert w[4].tolist() == [16, 17, 20, 21]  # sample 1 starts a new set of windows
    for i, win in enumerate(w):
        assert ((win // 16) == i // 4).all()
    ids = window_ids(grid, window)
    assert ids.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    assert window_attention_mask(grid, window).sum().item() == 16 * 4


@pytest.mark.parametrize("grid,window,msg", [((8, 8), (3, 3), "does not tile"), ((8, 8), (4,), "axes")])
def test_bad_windows(grid, window, msg):
    with pytest.raises(ValueError, match=msg):
        window_partition(torch.randn(1, 64, 2), grid, window)
