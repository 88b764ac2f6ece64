"""Gaze geometry: (pitch, yaw) in radians <-> 3-D unit vectors, and angular error.

The convention is the one public MPIIFaceGaze code uses, so errors are comparable
with published results: x = -cos(p) sin(y), y = -sin(p), z = -cos(p) cos(y).
Column order is (pitch, yaw) everywhere in the project.
"""
import jax.numpy as jnp


def pitchyaw_to_vector(pitchyaw):
  """(..., 2) pitch, yaw in radians -> (..., 3) unit gaze vectors."""
  pitch, yaw = pitchyaw[..., 0], pitchyaw[..., 1]
  return jnp.stack([
      -jnp.cos(pitch) * jnp.sin(yaw),
      -jnp.sin(pitch),
      -jnp.cos(pitch) * jnp.cos(yaw),
  ], axis=-1)


def vector_to_pitchyaw(vectors):
  """(..., 3) gaze vectors (any length) -> (..., 2) pitch, yaw in radians."""
  v = vectors / jnp.linalg.norm(vectors, axis=-1, keepdims=True)
  pitch = jnp.arcsin(jnp.clip(-v[..., 1], -1.0, 1.0))
  yaw = jnp.arctan2(-v[..., 0], -v[..., 2])
  return jnp.stack([pitch, yaw], axis=-1)


def angular_error_deg(pred_pitchyaw, true_pitchyaw):
  """Per-sample angle in degrees between two (..., 2) gaze directions."""
  u = pitchyaw_to_vector(pred_pitchyaw)
  v = pitchyaw_to_vector(true_pitchyaw)
  cos = jnp.clip(jnp.sum(u * v, axis=-1), -1.0, 1.0)
  return jnp.degrees(jnp.arccos(cos))
