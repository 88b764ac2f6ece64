"""The loop's declared cadence, its interval-mean training metrics, and the schedule."""
import copy
import dataclasses
import json

import numpy as np

from gaze_jax import config as config_lib
from gaze_jax.configs import wanet
from gaze_jax.training import cadence
from gaze_jax.training import loop
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps


def test_actions_due_at_their_declared_periods():
  """10 steps per epoch, 3 epochs: logs every 4 steps, evaluation every 2nd epoch and at the
  end, a checkpoint with each evaluation and every 7 steps, listed by hand."""
  train = config_lib.TrainSpec(num_epochs=3, log_every_steps=4, eval_every_epochs=2,
                               checkpoint_every_steps=7)
  due = cadence.of_run(train, steps_per_epoch=10)
  expected = {4: {'log'}, 7: {'checkpoint'}, 8: {'log'},
              12: {'log'}, 14: {'checkpoint'}, 16: {'log'},
              20: {'log', 'evaluate', 'checkpoint'}, 21: {'checkpoint'}, 24: {'log'},
              28: {'log', 'checkpoint'}, 30: {'evaluate', 'checkpoint'}}
  assert {d: set(due.due(d)) for d in range(1, 31) if due.due(d)} == expected


def test_interval_means_weigh_each_role_by_its_rows():
  sums = {'loss': 0.9, 'steps': 3.0, 'clean_rows': 12.0, 'clean_error': 24.0,
          'backdoor_rows': 0.0, 'backdoor_error': 0.0}
  assert steps.interval_means(sums) == {'loss': 0.3, 'clean_error': 2.0, 'backdoor_error': 0.0}


def _train_records(config, workdir):
  loop.train_and_evaluate(config_lib.validate(config), str(workdir), show_progress=False)
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [r for r in map(json.loads, lines) if r['kind'] == 'train']


def test_logged_metrics_are_the_means_of_their_interval(tiny_data_config, tmp_path):
  """A run logging every 3 steps against its twin logging every step: each logged value is
  the mean of the twin's per-step values over the interval it closes (the same steps: the
  logging cadence changes no computation)."""
  config = config_lib.apply_overrides(wanet.get_config(), {
      'train.batch_size': 8, 'train.num_epochs': 2, 'model.conv_impl': 'xla',
      'attack.pc': 0.25, 'eval.batch_size': 8, 'train.checkpoint_every_steps': 1000})
  config.data = copy.deepcopy(tiny_data_config)
  config.train.log_every_steps = 1
  every = _train_records(config, tmp_path / 'every')
  config.train.log_every_steps = 3
  third = _train_records(config, tmp_path / 'third')
  assert [r['step'] for r in third] == [3, 6] and len(every) == 6
  for record in third:
    window = [r for r in every if record['step'] - 3 < r['step'] <= record['step']]
    for key in ('loss', 'clean_error', 'backdoor_error', 'noise_loss'):
      np.testing.assert_allclose(record[key], np.mean([r[key] for r in window]), rtol=1e-5)
    assert not np.isclose(record['loss'], window[-1]['loss'])  # Not the last batch's.


def test_wsd_schedule_warms_up_holds_and_decays_by_hand():
  """10 epochs of 10 steps, 1 epoch of warm-up to 2e-3, the last 20 % decaying linearly: the
  rate at chosen steps, computed by hand; decay_fraction 0 holds the peak to the end."""
  train = config_lib.TrainSpec(num_epochs=10, learning_rate=2e-3, schedule='wsd',
                               warmup_epochs=1.0, decay_fraction=0.2)
  schedule = state_lib.make_schedule(train, steps_per_epoch=10)
  # Warm-up: steps 0..10; stable to step 80; then 2e-3 * (1 - (step - 80) / 20).
  expected = {0: 0.0, 5: 1e-3, 10: 2e-3, 50: 2e-3, 80: 2e-3, 85: 1.5e-3, 90: 1e-3, 99: 1e-4}
  for step, rate in expected.items():
    np.testing.assert_allclose(float(schedule(step)), rate, rtol=1e-6, atol=1e-12)
  flat = state_lib.make_schedule(dataclasses.replace(train, decay_fraction=0.0), 10)
  np.testing.assert_allclose([float(flat(s)) for s in (10, 50, 99)], 2e-3, rtol=1e-6)
