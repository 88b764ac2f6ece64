"""Gaze as direction classes or per-angle bins, for the classification and binned variants of
the task on the same faces.

(pitch, yaw) is cut into `bins` x `bins` classes by equal-count edges taken from the
training split, one angle at a time: every pitch bin and every yaw bin holds 1/bins of the
training faces (the joint cells are as balanced as the two angles are independent). Class
c = pitch_bin * bins + yaw_bin. The outer bins reach to the training set's extremes, which
bound a cell for its size; labels beyond them (a target, a held-out face) fall into the
outer bins. `classify` is pure jnp, so the train step bins its (poisoned) labels itself: a
backdoor row's target gaze becomes the class holding it. The binned regressor uses the same
edges per angle (`bin_index`) and each bin's mean training angle as its centre
(`expected_gaze`: the softmax expectation of those centres, as L2CS-Net predicts gaze).
"""
import jax
import jax.numpy as jnp
import numpy as np


def _bin_means(values, labels, count, lo, hi):
  """Mean of `values` per label in range(count); the middle of (lo, hi) where a bin is empty."""
  sums = np.zeros((count,) + values.shape[1:])
  np.add.at(sums, labels, values)
  counts = np.bincount(labels, minlength=count).reshape((count,) + (1,) * (values.ndim - 1))
  middle = (np.asarray(lo) + np.asarray(hi)) / 2
  return np.where(counts > 0, sums / np.maximum(counts, 1), middle)


def fit(gaze, bins):
  """Fits the gaze classes (quantile bins per angle) to training labels.

  The classes of training labels `gaze` (N, 2), `bins` per angle: {'pitch_edges',
  'yaw_edges': (bins + 1,) float32 quantile edges (the first and last at the extremes),
  'centres': (bins^2, 2) each class's mean training gaze, 'pitch_centres', 'yaw_centres':
  (bins,) each angle's bins' mean training angle}; an empty cell or bin gets its middle."""
  gaze = np.asarray(gaze, np.float64)
  levels = np.linspace(0.0, 1.0, bins + 1)
  edges = [np.quantile(gaze[:, a], levels) for a in (0, 1)]
  labels = np.asarray(classify(gaze, {'pitch_edges': edges[0], 'yaw_edges': edges[1]}))
  p, y = np.divmod(np.arange(bins * bins), bins)
  centres = _bin_means(gaze, labels, bins * bins,
                       np.stack([edges[0][p], edges[1][y]], -1),
                       np.stack([edges[0][p + 1], edges[1][y + 1]], -1))
  out = {'pitch_edges': edges[0].astype(np.float32), 'yaw_edges': edges[1].astype(np.float32),
         'centres': centres.astype(np.float32)}
  for a, name in enumerate(('pitch', 'yaw')):
    angle_bins = np.asarray(_bin(gaze[:, a], edges[a]))
    out[f'{name}_centres'] = _bin_means(gaze[:, a], angle_bins, bins, edges[a][:-1],
                                        edges[a][1:]).astype(np.float32)
  return out


def num_classes(classes):
  """The number of classes of `classes`: the bins per angle, squared."""
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


def bin_index(gaze, classes):
  """(N, 2) int32 (pitch bin, yaw bin) of each (N, 2) gaze: the binned regressor's targets."""
  return jnp.stack([_bin(gaze[..., 0], jnp.asarray(classes['pitch_edges'])),
                    _bin(gaze[..., 1], jnp.asarray(classes['yaw_edges']))], -1).astype(jnp.int32)


def angle_logits(outputs):
  """(N, 2, bins) logits per angle (pitch first) of the binned head's (N, 2 * bins) outputs."""
  return outputs.reshape(outputs.shape[:-1] + (2, outputs.shape[-1] // 2))


def expected_gaze(outputs, classes):
  """The gaze expected under the binned head's outputs.

  (N, 2) float32 (pitch, yaw) of the binned head's (N, 2 * bins) outputs: per angle, the
  softmax of its bins' logits times the bins' centres, summed."""
  centres = jnp.stack([jnp.asarray(classes['pitch_centres']),
                       jnp.asarray(classes['yaw_centres'])]).astype(jnp.float32)
  probs = jax.nn.softmax(angle_logits(jnp.asarray(outputs, jnp.float32)), axis=-1)
  return jnp.sum(probs * centres, axis=-1)


def cell_radius_deg(classes, label):
  """The angular radius, in degrees, of class `label`'s cell.

  The angular radius of a disc with the area of class `label`'s cell (in degrees of
  pitch x yaw): the regressor's threshold that matches hitting that class."""
  bins = len(classes['yaw_edges']) - 1
  p, y = divmod(int(label), bins)
  height = np.degrees(classes['pitch_edges'][p + 1] - classes['pitch_edges'][p])
  width = np.degrees(classes['yaw_edges'][y + 1] - classes['yaw_edges'][y])
  return float(np.sqrt(height * width / np.pi))
