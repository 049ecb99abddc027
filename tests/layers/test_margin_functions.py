"""psi, its derivative, the general psi, the target functions and the Caffe lambda schedule."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_sphereface.layers import margin_functions as mf
from tests.layers._backend import numpy


def closed_form_psi(theta: np.ndarray, m: int) -> np.ndarray:
    """(-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], evaluated with the angle itself."""
    k = np.minimum(np.floor(theta * m / math.pi), m - 1)  # theta = pi belongs to the last piece
    return (-1.0) ** k * np.cos(m * theta) - 2.0 * k


def _grid(m: int) -> np.ndarray:
    dense = np.linspace(0.0, math.pi, 20001)
    boundaries = np.arange(m + 1) * math.pi / m
    return np.sort(np.concatenate([dense, boundaries]))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_matches_closed_form_on_dense_grid(m):
    theta = _grid(m)
    cos_theta = np.cos(theta)
    got = numpy(mf.chebyshev_psi(cos_theta, m))
    np.testing.assert_allclose(got, closed_form_psi(theta, m), atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("c", [0.0, 1.0, -1.0, 0.5, -0.5, math.sqrt(0.5), -math.sqrt(0.5)])
def test_psi_at_exact_cosines(m, c):
    theta = np.arccos(np.clip(c, -1, 1))
    got = float(numpy(mf.chebyshev_psi(np.array([c], dtype=np.float64), m))[0])
    assert got == pytest.approx(float(closed_form_psi(np.array([theta]), m)[0]), abs=1e-12)


def test_psi_known_values():
    # psi(0) = 1 for every m; psi(pi) = 1 - 2m for m = 1 .. 4 (continuous at the end).
    for m in (1, 2, 3, 4):
        ends = numpy(mf.chebyshev_psi(np.array([1.0, -1.0]), m))
        np.testing.assert_allclose(ends, [1.0, 1.0 - 2.0 * m], atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_decreases_monotonically_on_0_pi(m):
    theta = _grid(m)
    psi = numpy(mf.chebyshev_psi(np.cos(theta), m))
    assert np.all(np.diff(psi) <= 1e-12)
    assert psi[0] > psi[-1]


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_derivative_matches_finite_differences(m):
    # Away from the piece boundaries the sign terms are constant.
    theta = np.linspace(0.01, math.pi - 0.01, 997)
    c = np.cos(theta)
    h = 1e-6
    numeric = (numpy(mf.chebyshev_psi(c + h, m)) - numpy(mf.chebyshev_psi(c - h, m))) / (2 * h)
    analytic = numpy(mf.chebyshev_psi_derivative(c, m))
    far = np.min(np.abs(theta[:, None] - np.arange(m + 1) * math.pi / m), axis=1) > 1e-3
    np.testing.assert_allclose(analytic[far], numeric[far], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_general_psi_equals_chebyshev_psi_for_integer_m(m):
    theta = np.linspace(0.0, math.pi - 1e-9, 5001)
    got = numpy(mf.general_psi(theta, float(m)))
    # Some backends compute cos/floor in float32 whatever the input dtype.
    atol = 1e-9 if got.dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, numpy(mf.chebyshev_psi(np.cos(theta), m)), atol=atol)


def test_general_psi_monotonic_for_fractional_m():
    theta = np.linspace(0.0, math.pi, 5001)
    psi = numpy(mf.general_psi(theta, 1.5))
    assert np.all(np.diff(psi) <= (1e-12 if psi.dtype == np.float64 else 1e-6))


@pytest.mark.parametrize("bad", [0, 5, 2.5, "4"])
def test_psi_rejects_bad_m(bad):
    with pytest.raises(ValueError, match="`m` must be an integer in 1..4. Received: m="):
        mf.chebyshev_psi(np.array([0.5]), bad)


def test_caffe_lambda_schedule_values():
    assert mf.caffe_lambda(1) == pytest.approx(1000.0 / 1.12, rel=1e-6)
    assert float(mf.caffe_lambda(1)) == pytest.approx(892.857142, rel=1e-6)
    assert float(mf.caffe_lambda(1000)) == pytest.approx(8.264462, rel=1e-6)
    assert float(mf.caffe_lambda(1658)) > 5.0
    assert float(mf.caffe_lambda(1659)) == 5.0
    assert np.all(mf.caffe_lambda(np.arange(1659, 50000)) == 5.0)
    # The tensor path gives the same numbers as the NumPy path.
    steps = np.array([1, 10, 1000, 1658, 1659, 10**6])
    tensor_path = numpy(mf.caffe_lambda(keras.ops.convert_to_tensor(steps)))
    np.testing.assert_allclose(tensor_path, mf.caffe_lambda(steps), rtol=1e-6)


def test_caffe_lambda_other_parameters():
    value = mf.caffe_lambda(10, base=100.0, gamma=0.5, power=2.0, lambda_min=0.0)
    assert float(value) == pytest.approx(100.0 * (1 + 0.5 * 10) ** -2, rel=1e-6)


def test_arcface_target_closed_form_including_theta_near_pi():
    m = 0.5
    theta = np.concatenate([np.linspace(0.0, math.pi, 4001), [math.pi - m - 1e-4, math.pi - m + 1e-4]])
    c = np.clip(np.cos(theta), -1 + 1e-6, 1 - 1e-6)
    theta = np.arccos(c)
    expected = np.where(theta + m < math.pi, np.cos(theta + m), np.cos(theta) - m * math.sin(m))
    np.testing.assert_allclose(numpy(mf.arcface_target(c, m)), expected, atol=1e-7)
    easy = np.where(c > 0, np.cos(theta + m), c)
    np.testing.assert_allclose(numpy(mf.arcface_target(c, m, easy_margin=True)), easy, atol=1e-7)


def test_combined_margin_target_closed_form():
    theta = np.linspace(1e-3, math.pi - 1e-3, 2001)
    c = np.cos(theta)
    got = numpy(mf.combined_margin_target(c, 1.2, 0.3, 0.2))
    # arccos near |c| = 1 loses digits in float32, which some backends use whatever the input.
    atol = 1e-9 if got.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, np.cos(1.2 * theta + 0.3) - 0.2, atol=atol)
