"""The classification variant: direction classes, the WaNet paper's metrics by hand, a step."""
import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.data import classes
from gaze_jax.metrics import classification
from gaze_jax.training import init


def _gaze(seed=0, n=900):
  rng = np.random.default_rng(seed)
  return np.stack([rng.uniform(-0.6, 0.3, n), rng.normal(0.0, 0.25, n)], -1)


def test_equal_count_edges_balance_and_cover_every_training_label():
  gaze = _gaze()
  fitted = classes.fit(gaze, 3)
  for axis, name in ((0, 'pitch_edges'), (1, 'yaw_edges')):
    np.testing.assert_allclose(fitted[name], np.quantile(gaze[:, axis], [0, 1 / 3, 2 / 3, 1]),
                               rtol=1e-6)
  labels = np.asarray(classes.classify(gaze, fitted))
  assert labels.min() >= 0 and labels.max() < 9 and classes.num_classes(fitted) == 9
  pitch_bin, yaw_bin = np.divmod(labels, 3)
  for bins in (pitch_bin, yaw_bin):  # Each angle's bins hold a third of the faces each.
    np.testing.assert_array_equal(np.bincount(bins), [300, 300, 300])
  # Independent reference: NumPy's digitize against the inner edges.
  reference = (np.digitize(gaze[:, 0], fitted['pitch_edges'][1:-1]) * 3 +
               np.digitize(gaze[:, 1], fitted['yaw_edges'][1:-1]))
  np.testing.assert_array_equal(labels, reference)
  for c in range(9):
    np.testing.assert_allclose(fitted['centres'][c], gaze[labels == c].mean(0), rtol=1e-5)


def test_target_class_holds_the_regression_target():
  """Also for targets beyond the training range: the outer bins are unbounded."""
  fitted = classes.fit(_gaze(), 3)

  def bracket(edges, index):
    return (-np.inf if index == 0 else edges[index],
            np.inf if index == len(edges) - 2 else edges[index + 1])

  for target in [(-0.2, 0.35), (0.5, 1.0), (-1.0, -1.0), (0.0, 0.0)]:
    p, y = divmod(int(classes.classify(np.asarray([target]), fitted)[0]), 3)
    low, high = bracket(fitted['pitch_edges'], p)
    assert low <= target[0] < high
    low, high = bracket(fitted['yaw_edges'], y)
    assert low <= target[1] < high
  assert int(classes.classify(np.asarray([(0.5, 1.0)]), fitted)[0]) == 8


def test_attack_success_and_accuracies_by_hand():
  fitted = {'pitch_edges': np.array([-1.0, 0.0, 1.0], np.float32),
            'yaw_edges': np.array([-1.0, 0.0, 1.0], np.float32),
            'centres': np.array([[-.5, -.5], [-.5, .5], [.5, -.5], [.5, .5]], np.float32)}
  true = np.array([[-.5, -.5], [-.5, .5], [.5, -.5], [.5, .5]], np.float32)  # Classes 0-3.
  targets = np.tile([[.5, .5]], (4, 1)).astype(np.float32)  # Class 3.
  onehot = lambda labels: np.eye(4)[labels] * 5.0  # pylint: disable=unnecessary-lambda-assignment
  out = classification.classifier_summary(
      clean_logits=onehot([0, 1, 2, 0]), backdoor_logits=onehot([3, 3, 1, 3]),
      noise_logits=onehot([0, 0, 2, 3]), true_gaze=true, targets=targets, classes=fitted)
  assert out['clean_accuracy'] == 75.0       # 3 of 4.
  assert out['attack_success'] == pytest.approx(200 / 3)  # Faces 0-2 eligible; 0 and 1 hit.
  assert out['noise_accuracy'] == 75.0
  assert out['backdoor_error'] > 0  # Face 2 predicted at class 1's centre, far from target.
  cells = classification.regressor_cell_metrics(
      backdoor_pred=np.array([[.4, .6], [.1, .1], [-.1, .9], [.9, .9]], np.float32),
      true_gaze=true, targets=targets, classes=fitted)
  assert cells['cell_asr'] == pytest.approx(200 / 3)  # Faces 0 and 1 land in class 3.
  radius = np.sqrt(np.degrees(1.0) ** 2 / np.pi)   # A 1 x 1 rad cell as a disc.
  assert cells['cell_radius'] == pytest.approx(radius, rel=1e-6)


def test_one_classification_step_learns_a_repeated_batch(tiny_step_config,
                                                         train_on_one_batch):
  config = tiny_step_config
  config.train.warmup_epochs = 0
  config.task.kind = 'classification'
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  assert state.params['fc']['kernel'].shape == (512, 9)
  gaze = _gaze(1, 8).astype(np.float32)
  fitted = classes.fit(_gaze(2), 3)
  losses, metrics = train_on_one_batch(run, state, trigger, fitted, gaze)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert {'backdoor_accuracy', 'clean_accuracy', 'noise_accuracy'} <= set(metrics)
