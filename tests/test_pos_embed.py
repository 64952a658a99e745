import pytest
import torch

from dit3d.nn import sincos_1d, sincos_2d, sincos_3d, sincos_grid


def test_1d_values():
    emb = sincos_1d(torch.tensor([0.0, 1.0]), 4)
    expected = torch.tensor([[0, 0, 1, 1], [torch.sin(torch.tensor(1.0)), torch.sin(torch.tensor(0.01)),
                                            torch.cos(torch.tensor(1.0)), torch.cos(torch.tensor(0.01))]])
    assert torch.allclose(emb, expected, atol=1e-6)


def test_3d_grid_splits_width_per_axis_row_major():
    emb = sincos_3d((2, 3, 4), 12)
    assert emb.shape == (24, 12)
    # token (i, j, k) sits at row i*12 + j*4 + k; its first 4 columns depend on i only
    i, j, k = 1, 2, 3
    row = emb[i * 12 + j * 4 + k]
    assert torch.allclose(row[:4], sincos_1d(torch.tensor([float(i)]), 4)[0])
    assert torch.allclose(row[4:8], sincos_1d(torch.tensor([float(j)]), 4)[0])
    assert torch.allclose(row[8:], sincos_1d(torch.tensor([float(k)]), 4)[0])
    assert torch.unique(emb, dim=0).shape[0] == 24  # every position distinct


def test_2d_and_shapes():
    assert sincos_2d((4, 5), 8).shape == (20, 8)
    assert sincos_grid((8, 8, 8), 1152).shape == (512, 1152)


@pytest.mark.parametrize("grid,dim,msg", [((8, 8, 8), 1024, "divisible by 6"), ((4,), 7, "divisible by 2"),
                                          ((), 6, "non-empty"), ((0, 2), 8, "positive")])
def test_bad_widths_raise(grid, dim, msg):
    with pytest.raises(ValueError, match=msg):
        sincos_grid(grid, dim)
