"""Imperceptibility per trigger kind: the same seeded triggers, batching-independent means."""
import copy

import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.config import TRIGGER_KINDS
from gaze_jax.configs import wanet
from gaze_jax.data import splits
from gaze_jax.metrics import imperceptibility


def _images(n=5, size=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _config(size=32):
  config = wanet.get_config()
  config.data.image_size = size
  config.attack.seed = 7
  return config


def _by_kind(config):
  return triggers.triggers_by_kind(config_lib.validate(config).attack, config.data.image_size)


@pytest.mark.parametrize('kind', TRIGGER_KINDS)
def test_triggers_are_those_a_run_of_that_kind_draws(kind):
  config = _config()
  spec, trigger = _by_kind(config)[kind]
  trained = copy.deepcopy(config)
  trained.attack.kind = kind
  assert spec == config_lib.validate(trained).attack
  expected = triggers.make_trigger(spec, 32)
  assert trigger.keys() == expected.keys()
  for name in expected:
    np.testing.assert_array_equal(trigger[name], expected[name])


@pytest.mark.parametrize('kind', TRIGGER_KINDS)
def test_measure_matches_imperceptibility_on_all_images(kind):
  spec, trigger = _by_kind(_config())[kind]
  images = _images()
  clean = images.astype(np.float32) / 255
  expected = imperceptibility.summarize(clean, triggers.apply_trigger(spec, trigger, clean))
  for batch_size in (2, 256):  # Batching must not change the means.
    got = imperceptibility.measure(spec, trigger, images, batch_size=batch_size)
    for name, value in expected.items():
      np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)
  d = triggers.displacement_px(spec, trigger)
  np.testing.assert_allclose(got['displacement_mean_px'], np.mean(d), rtol=1e-6)
  np.testing.assert_allclose(got['displacement_max_px'], np.max(d), rtol=1e-6)
  assert (got['displacement_max_px'] > 0) == (kind == 'wanet')


def test_measure_all_orders_visibility_and_names_settings():
  metrics = imperceptibility.measure_all(_by_kind(_config()), _images(8))
  assert list(metrics) == list(TRIGGER_KINDS)
  assert metrics['wanet']['k'] == 4 and metrics['blended']['alpha'] == 0.2
  assert metrics['badnets']['position'] == 'bottom_right'
  assert all(m['attack_seed'] == 7 for m in metrics.values())
  assert metrics['badnets']['linf'] > 0.5  # A black-and-white patch on random pixels.
  for m in metrics.values():
    assert set(imperceptibility.METRICS) <= set(m)


def test_stacked_images_are_the_test_split_in_order(tiny_data_config):
  _, test = splits.load_splits(tiny_data_config, 0)
  images = splits.stack(test, 'image')
  assert images.dtype == np.uint8 and images.shape == (len(test), 32, 32, 3)
  np.testing.assert_array_equal(images[-1], test[len(test) - 1]['image'])
