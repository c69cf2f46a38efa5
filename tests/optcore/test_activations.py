"""Activations: forward and backward against their formulas, in place, for any shape and dtype."""

import numpy as np
import pytest

from optcore import activations
from optcore.activations import ACTIVATIONS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3), (1, 5), (9,), (4, 6, 2)])
def test_relu_is_max_with_zero_in_place(shape, dtype):
    z = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    expected = np.where(z > 0, z, 0)
    out = ACTIVATIONS["relu"].forward(z)
    assert out is z and out.dtype == dtype and np.array_equal(out, expected)
    da = np.ones(shape, dtype)
    assert np.array_equal(ACTIVATIONS["relu"].backward(out, da), (expected > 0).astype(dtype))


def test_relu_on_a_view_and_with_nan():
    z = np.array([[-1.0, 2.0, np.nan, 3.0], [4.0, -5.0, 0.0, -0.0]], np.float32)[:, ::2]  # not contiguous
    out = ACTIVATIONS["relu"].forward(z)
    assert np.array_equal(out, np.array([[0.0, np.nan], [4.0, 0.0]], np.float32), equal_nan=True)


def test_relu_keeps_a_bounded_set_of_zero_arrays():
    # A network deeper than the cache: every width still gets a correct, read-only zeros operand.
    for width in range(1, 2 * activations._ZEROS_KEPT + 2):
        z = -np.ones((3, width), np.float32)
        assert not ACTIVATIONS["relu"].forward(z).any()
    assert len(activations._ZEROS) == activations._ZEROS_KEPT
    assert all(not a.flags.writeable and not a.any() for a in activations._ZEROS.values())
