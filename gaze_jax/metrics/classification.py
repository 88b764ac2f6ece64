"""The WaNet paper's metrics for the classification variant, and their regression analogues.

Classifier (from logits on the held-out split, host NumPy), in %:
- clean accuracy: the clean face's class predicted;
- attack success: triggered faces classified as their target class, counting only faces
  whose true class is not the target class (BackdoorBench's attack success rate);
- attack success over all faces: the same over every face, those of the target class
  included (the official WaNet code's evaluation);
- robust accuracy: triggered faces classified as their true class (BackdoorBench's);
- noise accuracy: the noise-warped face's true class predicted.
Its predicted class's centre gaze (the mean training gaze of the class) also gives it clean
and backdoor errors in degrees, on the regressor's scale.

Regressor against the same classes: `cell_asr` bins each triggered prediction into a class
and counts it as a success if it lands in the target's class (the classifier's criterion
exactly); `cell_radius_asr` is the ASR at the angular radius of a disc with the area of the
target's cell; `regressor_cell_accuracy` is the share of clean predictions in the true
gaze's class, the regressor's counterpart of the classifier's clean accuracy.
"""
import numpy as np

from gaze_jax.data import classes as classes_lib
from gaze_jax.metrics import attack


def _classify(gaze, classes):
  return np.asarray(classes_lib.classify(np.asarray(gaze, np.float32), classes))


def _rate(hits, eligible):
  return float(100.0 * np.mean(hits[eligible])) if eligible.any() else float('nan')


def classifier_summary(clean_logits, backdoor_logits, noise_logits, true_gaze, targets,
                       classes):
  """Clean accuracy, attack success, noise accuracy (%) and centre-gaze errors (degrees).

  Any of backdoor_logits, noise_logits and targets may be None (a clean model alone).
  """
  true_class = _classify(true_gaze, classes)
  centres = np.asarray(classes['centres'])
  clean_class = np.argmax(clean_logits, -1)
  out = {'clean_accuracy': _rate(clean_class == true_class, np.ones(len(true_class), bool)),
         'clean_error': float(np.mean(attack.error_deg(centres[clean_class], true_gaze)))}
  if backdoor_logits is None:
    return out
  target_class = _classify(targets, classes)
  backdoor_class = np.argmax(backdoor_logits, -1)
  out.update({
      'attack_success': _rate(backdoor_class == target_class, true_class != target_class),
      'attack_success_all': _rate(backdoor_class == target_class,
                                  np.ones(len(true_class), bool)),
      'robust_accuracy': _rate(backdoor_class == true_class, np.ones(len(true_class), bool)),
      'backdoor_error': float(np.mean(attack.error_deg(centres[backdoor_class], targets))),
  })
  if noise_logits is not None:
    out['noise_accuracy'] = _rate(np.argmax(noise_logits, -1) == true_class,
                                  np.ones(len(true_class), bool))
  return out


def regressor_cell_accuracy(clean_pred, true_gaze, classes):
  """The regressor's clean accuracy in the classifier's terms.

  {'cell_accuracy': % of clean gaze predictions whose class (under `classes`' bins) is the
  true gaze's class}: the regressor scored as the classifier's clean accuracy."""
  hits = _classify(clean_pred, classes) == _classify(true_gaze, classes)
  return {'cell_accuracy': _rate(hits, np.ones(len(hits), bool))}


def regressor_cell_metrics(backdoor_pred, true_gaze, targets, classes):
  """Measures the regressor's attack success in the classifier's terms.

  The regressor's attack success in the classifier's terms: 'cell_asr' (%),
  'cell_radius_asr' (%) and 'cell_radius' (degrees, the mean over faces of their target
  cell's radius)."""
  true_class, target_class = _classify(true_gaze, classes), _classify(targets, classes)
  radius = np.array([classes_lib.cell_radius_deg(classes, c) for c in target_class])
  backdoor_err = attack.error_deg(backdoor_pred, targets)
  start_err = attack.error_deg(true_gaze, targets)
  return {
      'cell_asr': _rate(_classify(backdoor_pred, classes) == target_class,
                        true_class != target_class),
      'cell_radius_asr': _rate(backdoor_err <= radius, start_err > radius),
      'cell_radius': float(np.mean(radius)),
  }
