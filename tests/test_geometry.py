"""Gaze geometry against independent NumPy formulas and known angles."""
import numpy as np
import pytest

from gaze_jax import geometry


def numpy_vector(p, y):
  return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], -1)


def numpy_angle_deg(a, b):
  u, v = numpy_vector(*a.T), numpy_vector(*b.T)
  cos = np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
  return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_vector_matches_numpy_and_is_unit():
  rng = np.random.default_rng(0)
  py = rng.uniform([-1.2, -1.5], [1.2, 1.5], size=(100, 2)).astype(np.float32)
  v = np.asarray(geometry.pitchyaw_to_vector(py))
  np.testing.assert_allclose(v, numpy_vector(py[:, 0], py[:, 1]), atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-6)


def test_straight_ahead_looks_down_minus_z():
  np.testing.assert_allclose(geometry.pitchyaw_to_vector(np.zeros(2, np.float32)), [0, 0, -1])


def test_round_trip():
  rng = np.random.default_rng(1)
  py = rng.uniform([-1.2, -1.5], [1.2, 1.5], size=(100, 2)).astype(np.float32)
  np.testing.assert_allclose(geometry.vector_to_pitchyaw(geometry.pitchyaw_to_vector(py)), py, atol=1e-5)


def test_angular_error_matches_numpy():
  rng = np.random.default_rng(2)
  a = rng.uniform(-0.8, 0.8, size=(200, 2))
  b = rng.uniform(-0.8, 0.8, size=(200, 2))
  np.testing.assert_allclose(geometry.angular_error_deg(a, b), numpy_angle_deg(a, b), atol=1e-3)


@pytest.mark.parametrize('a, b, expected', [
    ((0.0, 0.0), (0.0, np.pi / 2), 90.0),
    ((0.0, 0.0), (np.pi / 2, 0.0), 90.0),
    ((0.0, 0.3), (0.0, 0.3), 0.0),
    ((0.0, 0.0), (0.0, np.pi), 180.0),
    ((0.0, 0.1), (0.0, 0.3), np.degrees(0.2)),
])
def test_known_angles(a, b, expected):
  err = geometry.angular_error_deg(np.array([a]), np.array([b]))
  np.testing.assert_allclose(err, [expected], atol=1e-2)
