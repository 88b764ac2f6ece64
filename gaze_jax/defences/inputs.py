"""Input-level detection: is this face triggered? Two detectors, each a per-face statistic
of a network on clean reference faces the defender holds.

- 'strip' (Gao et al., STRIP, ACSAC 2019, made a regressor's): each face is blended with
  `n` faces drawn from the defender's clean pool, (1 - alpha) * face + alpha * other, and
  the network predicts each blend. A regressor's statistic is the spread of those
  predictions (the mean angle to their mean direction, degrees): a backdoor that holds
  under the blending keeps every blend at the target, so a LOW spread means triggered. A
  classifier's statistic is STRIP's entropy of the blends' softmax (LOW = triggered).
- 'feature': the Mahalanobis distance of the face's penultimate features from the clean
  pool's (mean and ridge-shrunk covariance): triggered faces that the network routes to a
  target lie off the clean features (HIGH = triggered).

`detect` scores a detector on held-out clean faces against the same faces triggered:
AUROC and FPR at 95 % detection (scores.detection).
"""
import jax
import numpy as np

from gaze_jax.defences import scores
from gaze_jax.errors import UserError

DETECTORS = ('strip', 'feature')
STRIP_BLENDS = 16
STRIP_ALPHA = 0.5
STRIP_CHUNK = 256  # Blends per call of the network.
RIDGE = 0.1  # Shrinkage of the feature covariance towards its mean variance.


def _check_images(images01, name):
  images01 = np.asarray(images01)
  if images01.ndim != 4 or not len(images01):
    raise UserError(f'{name}: expected a non-empty (N, H, W, C) batch of images, got shape '
                    f'{images01.shape}')
  return images01.astype(np.float32)


def strip_indices(key, faces, n, pool_size):
  """(faces, n) indices into the pool of the faces each face is blended with."""
  return np.asarray(jax.random.randint(key, (faces, n), 0, pool_size))


def strip_statistic(network, images01, pool01, key, n=STRIP_BLENDS, alpha=STRIP_ALPHA):
  """The STRIP statistic of each face.

  (N,) STRIP statistic of each face: the spread (degrees) of a regressor's predictions
  on its n blends, or a classifier's mean entropy (nats). LOW = triggered.

  Blend j of face i is (1 - alpha) * face_i + alpha * pool[idx[i, j]], idx drawn from `key`.
  """
  images01 = _check_images(images01, 'strip faces')
  pool01 = _check_images(pool01, 'strip pool')
  if not 0.0 < alpha < 1.0 or n < 2:
    raise UserError(f'strip: expected 0 < alpha < 1 and n >= 2 blends, got alpha={alpha}, '
                    f'n={n}')
  idx = strip_indices(key, len(images01), n, len(pool01))
  chunk = max(1, STRIP_CHUNK // n)
  out = []
  for i in range(0, len(images01), chunk):
    faces, others = images01[i:i + chunk], pool01[idx[i:i + chunk]]  # (c, ...), (c, n, ...)
    blends = (1.0 - alpha) * faces[:, None] + alpha * others
    out.append(network.outputs(blends.reshape((-1,) + faces.shape[1:])).reshape(
        len(faces), n, -1))
  out = np.concatenate(out)  # (N, n, outputs)
  if network.task == 'classification':
    return scores.entropy_per_row(out)
  return scores.spread_per_row(out)


def fit_features(features):
  """Fits the clean reference statistics of the feature detector.

  {'mean', 'precision'} of (N, F) clean reference features: the inverse of their
  covariance shrunk towards its mean variance, (1 - RIDGE) C + RIDGE tr(C) / F I."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise UserError(f'feature detector: expected at least 2 clean reference faces, got '
                    f'{len(features)}')
  mean = features.mean(axis=0)
  cov = np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])
  scale = max(np.trace(cov) / len(cov), 1e-12)
  shrunk = (1.0 - RIDGE) * cov + RIDGE * scale * np.eye(len(cov))
  return {'mean': mean, 'precision': np.linalg.inv(shrunk)}


def mahalanobis(fit, features):
  """(N,) Mahalanobis distance of features from a `fit_features` fit."""
  d = np.asarray(features, np.float64) - fit['mean']
  return np.sqrt(np.maximum(np.einsum('nf,fg,ng->n', d, fit['precision'], d), 0.0))


def feature_statistic(network, images01, pool01):
  """Scores each face by how far its features lie from the clean pool's.

  (N,) Mahalanobis distance of each face's features from the clean pool's. HIGH =
  triggered."""
  images01 = _check_images(images01, 'feature faces')
  pool01 = _check_images(pool01, 'feature pool')
  return mahalanobis(fit_features(network.features(pool01)), network.features(images01))


def statistic(name, network, images01, pool01, key):
  """The oriented score (HIGH = triggered) of detector `name` on each face."""
  if name == 'strip':
    return -strip_statistic(network, images01, pool01, key)
  if name == 'feature':
    return feature_statistic(network, images01, pool01)
  raise UserError(f'unknown input detector {name!r}: expected one of {", ".join(DETECTORS)}')


def detect(name, network, clean01, triggered01, pool01, key):
  """Evaluates one input-level detector on clean and triggered faces.

  Detector `name` on held-out clean faces against triggered ones: scores.detection's
  AUROC, FPR at 95 % detection, and the mean raw statistics."""
  k_clean, k_triggered = jax.random.split(key)
  neg = statistic(name, network, clean01, pool01, k_clean)
  pos = statistic(name, network, triggered01, pool01, k_triggered)
  sign = -1.0 if name == 'strip' else 1.0  # Back to the detector's own statistic.
  out = scores.detection(neg, pos)
  out['clean_mean'], out['triggered_mean'] = sign * out['clean_mean'], sign * out['triggered_mean']
  out['statistic'] = {'strip': 'entropy (nats)' if network.task == 'classification'
                      else 'spread (deg)', 'feature': 'Mahalanobis distance'}[name]
  return out
