"""Tubelet tokenizer: exact round trips on 2-D (per-frame) and 3-D (time) patch grids, token order,
positions, conditioning masks between frames, tokens and pixels."""
import pytest
import torch

from dit3d.nn import sincos_3d
from dit3d.tokenizers import TubeletTokenizer, patchify_video, unpatchify_video


@pytest.mark.parametrize("F,S,p,pt,C", [(8, 32, 4, 1, 1), (8, 32, 8, 1, 3), (16, 32, 4, 2, 1), (6, 12, 3, 3, 2),
                                        (4, 16, 16, 4, 1)])
def test_round_trip_is_exact(F, S, p, pt, C):
    tok = TubeletTokenizer(F, S, p, time_patch=pt, channels=C)
    x = torch.randn(2, C, F, S, S, generator=torch.Generator().manual_seed(0))
    tokens = tok.encode(x)
    assert tokens.shape == (2, (F // pt) * (S // p) ** 2, pt * p * p * C) == (2, tok.num_tokens, tok.token_dim)
    assert torch.equal(tok.decode(tokens), x)
    assert torch.equal(patchify_video(unpatchify_video(tokens, tok.grid_size, p, pt, C), p, pt), tokens)


def test_non_square_frames_round_trip():
    tok = TubeletTokenizer(4, (8, 12), (4, 3), time_patch=2)
    x = torch.randn(1, 1, 4, 8, 12)
    assert tok.grid_size == (2, 2, 4)
    assert torch.equal(tok.decode(tok.encode(x)), x)


def test_tokens_are_time_major_tubelets_with_channel_last_features():
    # 2 frames of 2x4 pixels, value = 100 f + 10 row + col; patches 2x2, one frame per token
    f, r, c = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(4), indexing="ij")
    x = (100 * f + 10 * r + c).float()[None, None]  # (1, 1, 2, 2, 4)
    tokens = TubeletTokenizer(2, (2, 4), 2).encode(x)[0]
    assert tokens.tolist() == [[0, 1, 10, 11], [2, 3, 12, 13], [100, 101, 110, 111], [102, 103, 112, 113]]
    # 2-frame tubelets: the features run (frame, row, col); channels last
    two = TubeletTokenizer(2, (2, 4), 2, time_patch=2).encode(x)[0]
    assert two[0].tolist() == [0, 1, 10, 11, 100, 101, 110, 111]
    rgb = torch.stack([x[0, 0], -x[0, 0]])[None]  # (1, 2, 2, 2, 4)
    assert TubeletTokenizer(2, (2, 4), 2, channels=2).encode(rgb)[0, 0, :4].tolist() == [0, -0, 1, -1]


def test_positions_are_the_3d_sincos_table_of_the_token_grid():
    tok = TubeletTokenizer(16, 32, 4, time_patch=2)
    assert torch.equal(tok.pos_embed(96), sincos_3d((8, 8, 8), 96))
    pos = tok.pos_embed(12)  # a third each for t, h, w: tokens of one time slot share the t part
    assert torch.equal(pos[0, :4], pos[63, :4]) and not torch.equal(pos[0, :4], pos[64, :4])
    with pytest.raises(ValueError, match="divisible by 6"):
        tok.pos_embed(64)


def test_conditioning_masks_between_frames_tokens_and_pixels():
    tok = TubeletTokenizer(4, 4, 2, time_patch=2)  # grid (2, 2, 2)
    frames = torch.tensor([[True, True, False, False], [False, False, True, True]])
    given = tok.frames_to_tokens(frames)
    assert given.tolist() == [[True] * 4 + [False] * 4, [False] * 4 + [True] * 4]
    assert torch.equal(tok.tokens_to_frames(given), frames)
    pixels = tok.tokens_to_video(given)
    assert pixels.shape == (2, 1, 4, 4, 4) and torch.equal(pixels[:, 0].flatten(2).all(-1), frames)
    one = torch.zeros(1, 8, dtype=torch.bool)
    one[0, 5] = True  # time slot 1, row 0, column 1
    px = tok.tokens_to_video(one)[0, 0]
    assert int(px.sum()) == 8 and px[2:4, 0:2, 2:4].all()
    assert tok.tokens_to_frames(one).tolist() == [[False] * 4]  # no frame wholly given
    assert tok.frames_to_tokens(torch.tensor([True, True, False, False])).shape == (1, 8)
    with pytest.raises(ValueError, match="all given or all generated"):
        tok.frames_to_tokens(torch.tensor([[True, False, False, False]]))
    with pytest.raises(ValueError, match="one flag per token"):
        tok.tokens_to_video(torch.zeros(1, 7, dtype=torch.bool))


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="must divide num_frames"):
        TubeletTokenizer(5, 32, 4, time_patch=2)
    with pytest.raises(ValueError, match="must divide image_size"):
        TubeletTokenizer(8, 30, 4)
    tok = TubeletTokenizer(8, 32, 4)
    with pytest.raises(ValueError, match="build the model for the clips"):
        tok.encode(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        patchify_video(torch.randn(1, 8, 32, 32), 4)
