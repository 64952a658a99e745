"""The learning-rate schedule shared by the Lightning systems (dit3d.models.optim)."""
from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import pytest
import torch

from dit3d.models.optim import adamw_with_warmup, lr_factor


def test_warm_up_then_constant_by_default():
    assert [lr_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0, 0) == 1.0  # no warm-up


def test_linear_decay_reaches_zero_at_decay_steps_and_stays_there():
    factors = [lr_factor(s, 2, 6) for s in range(8)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_the_scheduler_follows_the_factor():
    weight = torch.nn.Parameter(torch.ones(3))
    config = adamw_with_warmup([weight], lr=0.1, weight_decay=0.0, warmup_steps=2, decay_steps=6)
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        weight.sum().backward()
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.05, 0.1, 0.1, 0.075, 0.05, 0.025, 0.0])


def test_decay_must_end_after_the_warm_up():
    with pytest.raises(ValueError, match="max_steps"):
        adamw_with_warmup([torch.nn.Parameter(torch.ones(1))], 0.1, 0.0, warmup_steps=10, decay_steps=10)


def test_decay_without_warm_up_starts_at_the_full_rate():
    assert [lr_factor(s, 0, 4) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_a_decay_that_misses_the_end_of_the_run_warns():
    from dit3d.models.optim import warn_if_decay_misses_the_end

    with pytest.warns(UserWarning, match="set both to the same step"):
        warn_if_decay_misses_the_end(SimpleNamespace(max_steps=20), 10, "lr_decay_steps")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_decay_misses_the_end(SimpleNamespace(max_steps=10), 10, "lr_decay_steps")  # the run ends with it
        warn_if_decay_misses_the_end(SimpleNamespace(max_steps=20), None, "lr_decay_steps")  # constant rate


@pytest.mark.parametrize("kind", ["dit3d", "image", "video"])
def test_ddpm_modules_anneal_with_lr_decay_steps(tiny_ddpm_module, kind):
    build = functools.partial(tiny_ddpm_module, kind)
    schedule = build(warmup_steps=2, lr_decay_steps=6).configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [schedule.lr_lambdas[0](s) for s in (0, 1, 4, 6, 9)] == pytest.approx([0.5, 1.0, 0.5, 0.0, 0.0])
    constant = build(warmup_steps=2).configure_optimizers()["lr_scheduler"]["scheduler"]
    assert constant.lr_lambdas[0](10 ** 6) == 1.0  # the default keeps the rate
    with pytest.raises(ValueError, match="lr_decay_steps"):
        build(warmup_steps=2, lr_decay_steps=2)  # refused at construction, not when fitting
    module = build(warmup_steps=2, lr_decay_steps=6)
    rebuilt = type(module)(**module.hparams)  # what loading a checkpoint does
    assert rebuilt.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](4) == pytest.approx(0.5)
    old = {k: v for k, v in module.hparams.items() if k != "lr_decay_steps"}  # a checkpoint from before the option
    assert type(module)(**old).configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](10 ** 6) == 1.0
    module._trainer = SimpleNamespace(max_steps=20)
    with pytest.warns(UserWarning, match="reaches 0 at step 6"):
        module.on_fit_start()
