import math

import numpy as np
import pytest

from dit3d.checks import finite_float, positive_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_positive_integers(value):
    assert positive_int(value, "n") == int(value) and type(positive_int(value, "n")) is int


@pytest.mark.parametrize("value", [0, -2, True, 1.0, "3", None])
def test_positive_int_names_the_argument(value):
    with pytest.raises(ValueError, match=r"steps must be a positive int, got"):
        positive_int(value, "steps")


@pytest.mark.parametrize("value", [0, 0.0, 2, 1.5, np.float32(0.25)])
def test_finite_float_accepts_non_negative_reals(value):
    assert finite_float(value, "eta") == pytest.approx(float(value))


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan, True, "1", None])
def test_finite_float_rejects(value):
    with pytest.raises(ValueError, match=r"guidance must be a finite float >= 0"):
        finite_float(value, "guidance")


def test_finite_float_positive_rejects_zero():
    assert finite_float(0.5, "temperature", positive=True) == 0.5
    with pytest.raises(ValueError, match=r"temperature must be a finite float > 0, got 0"):
        finite_float(0, "temperature", positive=True)
