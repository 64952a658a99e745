"""VDT task masks: evaluation masks per task, random training masks, the task mixture."""
import pytest
import torch

from dit3d.models.video_masks import (VIDEO_TASKS, random_task_mask, sample_task_masks, task_mask,
                                      task_probabilities)


def slots(mask: torch.Tensor, grid) -> list[bool]:
    """Per time slot: all tokens given (checks that a mask is constant within each slot)."""
    m = mask.reshape(grid[0], -1)
    assert torch.equal(m.all(-1), m.any(-1))
    return m.all(-1).tolist()


def test_evaluation_masks_per_task():
    grid = (8, 2, 2)
    assert slots(task_mask("unconditional", grid), grid) == [False] * 8
    assert slots(task_mask("predict", grid), grid) == [True] * 4 + [False] * 4
    assert slots(task_mask("predict", grid, context=2), grid) == [True] * 2 + [False] * 6
    assert slots(task_mask("backward", grid, context=3), grid) == [False] * 5 + [True] * 3
    assert slots(task_mask("interpolate", grid), grid) == [True] * 2 + [False] * 4 + [True] * 2
    box = task_mask("complete", (2, 4, 4)).reshape(2, 4, 4)
    assert (~box[:, 1:3, 1:3]).all() and int(box.sum()) == 2 * 12  # the central half is generated
    with pytest.raises(ValueError, match="something given, something generated"):
        task_mask("predict", grid, context=8)
    with pytest.raises(ValueError, match="1 <= 2 \\* context < 8"):
        task_mask("interpolate", grid, context=4)
    with pytest.raises(ValueError, match="unknown video task"):
        task_mask("extrapolate", grid)


def test_random_masks_follow_their_task():
    grid = (6, 2, 2)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        s = slots(random_task_mask("predict", grid, g), grid)
        k = sum(s)
        assert 1 <= k <= 5 and s == [True] * k + [False] * (6 - k)
        s = slots(random_task_mask("backward", grid, g), grid)
        k = sum(s)
        assert 1 <= k <= 5 and s == [False] * (6 - k) + [True] * k
        s = slots(random_task_mask("interpolate", grid, g), grid)
        assert s[0] and s[-1] and not all(s)
        box = random_task_mask("complete", grid, g)
        assert (~box).any()
    assert not random_task_mask("unconditional", grid, g).any()
    with pytest.raises(ValueError, match="at least 3 time slots"):
        random_task_mask("interpolate", (2, 2, 2))


def test_mixture_draws_tasks_by_weight_and_is_seeded():
    grid = (4, 2, 2)
    given, task = sample_task_masks(400, grid, {"predict": 1.0, "unconditional": 1.0},
                                    torch.Generator().manual_seed(0))
    assert given.shape == (400, 16) and task.shape == (400,)
    names = {VIDEO_TASKS[i] for i in task.tolist()}
    assert names == {"predict", "unconditional"} and 150 < int((task == 0).sum()) < 250
    assert not given[task == 0].any() and given[task == 1].any(-1).all()
    again, _ = sample_task_masks(400, grid, {"predict": 1.0, "unconditional": 1.0}, torch.Generator().manual_seed(0))
    assert torch.equal(given, again)
    assert torch.allclose(task_probabilities(None).sum(), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="not all 0"):
        task_probabilities({"predict": 0.0})
    with pytest.raises(ValueError, match="unknown video task"):
        task_probabilities({"future": 1.0})
