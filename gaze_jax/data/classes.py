"""Gaze as direction classes, for the classification variant of the task on the same faces.

(pitch, yaw) is cut into `bins` x `bins` classes by equal-count edges taken from the
training split, one angle at a time: every pitch bin and every yaw bin holds 1/bins of the
training faces (the joint cells are as balanced as the two angles are independent). Class
c = pitch_bin * bins + yaw_bin. The outer bins reach to the training set's extremes, which
bound a cell for its size; labels beyond them (a target, a held-out face) fall into the
outer bins. `classify` is pure jnp, so the train step bins its (poisoned) labels itself: a
backdoor row's target gaze becomes the class holding it.
"""
import jax.numpy as jnp
import numpy as np


def fit(gaze, bins):
  """{'pitch_edges', 'yaw_edges': (bins + 1,) float32, 'centres': (bins^2, 2)} of training
  labels `gaze` (N, 2): quantile edges (the first and last at the extremes) and each class's
  mean training gaze (its cell's middle if no training face falls in it)."""
  gaze = np.asarray(gaze, np.float64)
  levels = np.linspace(0.0, 1.0, bins + 1)
  edges = [np.quantile(gaze[:, a], levels) for a in (0, 1)]
  labels = np.asarray(classify(gaze, {'pitch_edges': edges[0], 'yaw_edges': edges[1]}))
  centres = np.empty((bins * bins, 2))
  for c in range(bins * bins):
    members = gaze[labels == c]
    p, y = divmod(c, bins)
    middle = [(edges[0][p] + edges[0][p + 1]) / 2, (edges[1][y] + edges[1][y + 1]) / 2]
    centres[c] = members.mean(axis=0) if len(members) else middle
  return {'pitch_edges': edges[0].astype(np.float32), 'yaw_edges': edges[1].astype(np.float32),
          'centres': centres.astype(np.float32)}


def num_classes(classes):
  return (len(classes['pitch_edges']) - 1) ** 2


def _bin(values, edges):
  """Index of the bin of each value among len(edges) - 1 bins (outer bins unbounded)."""
  return jnp.clip(jnp.searchsorted(edges[1:-1], values, side='right'), 0, len(edges) - 2)


def classify(gaze, classes):
  """(N,) int32 class of each (N, 2) gaze."""
  pitch_edges, yaw_edges = jnp.asarray(classes['pitch_edges']), jnp.asarray(classes['yaw_edges'])
  bins = yaw_edges.shape[0] - 1
  return (_bin(gaze[..., 0], pitch_edges) * bins + _bin(gaze[..., 1], yaw_edges)).astype(
      jnp.int32)


def cell_radius_deg(classes, label):
  """The angular radius of a disc with the area of class `label`'s cell (in degrees of
  pitch x yaw): the regressor's threshold that matches hitting that class."""
  bins = len(classes['yaw_edges']) - 1
  p, y = divmod(int(label), bins)
  height = np.degrees(classes['pitch_edges'][p + 1] - classes['pitch_edges'][p])
  width = np.degrees(classes['yaw_edges'][y + 1] - classes['yaw_edges'][y])
  return float(np.sqrt(height * width / np.pi))
