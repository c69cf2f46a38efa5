import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from optcore import RunningEWA, bias_correction, ewa, ewa_update

betas = st.floats(0.0, 0.999)


def test_ewa_matches_recursion_written_out():
    values, beta = [3.0, -1.0, 4.0, 1.5], 0.9
    v, expected = 0.0, []
    for t, x in enumerate(values, start=1):
        v = beta * v + (1 - beta) * x
        expected.append(v / (1 - beta**t))
    assert np.allclose(ewa(values, beta), expected, rtol=0, atol=1e-15)
    raw = ewa(values, beta, corrected=False)
    assert raw[0] == (1 - beta) * 3.0
    assert np.isclose(raw[1], beta * raw[0] + (1 - beta) * -1.0)


@given(c=st.floats(-1e6, 1e6), beta=betas, n=st.integers(1, 200))
def test_bias_corrected_ewa_of_a_constant_is_that_constant(c, beta, n):
    assert np.allclose(ewa([c] * n, beta), c, rtol=1e-9, atol=1e-9)


@given(beta=betas, n=st.integers(1, 50))
def test_array_update_equals_scalar_stream(beta, n):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((n, 3))
    avg = np.zeros(3)
    running = [RunningEWA(beta, corrected=False) for _ in range(3)]
    for x in xs:
        ewa_update(avg, x, beta)
        expected = [r.update(xi) for r, xi in zip(running, x, strict=True)]
        assert np.allclose(avg, expected, rtol=1e-12, atol=1e-12)


def test_scratch_buffer_gives_the_same_result():
    a, b = np.ones(4), np.ones(4)
    x = np.arange(4.0)
    ewa_update(a, x, 0.8)
    ewa_update(b, x, 0.8, scratch=np.empty(4))
    assert np.array_equal(a, b)


def test_bias_correction_formula():
    assert bias_correction(0.9, 1) == 1 - 0.9
    assert np.isclose(bias_correction(0.999, 10), 1 - 0.999**10)
