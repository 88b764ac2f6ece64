"""Model export: bitwise round trip, plain-safetensors readability, atomic writes."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from gaze_jax.configs import wanet
from gaze_jax.errors import UserError
from gaze_jax.workdir import files
from gaze_jax import export
from gaze_jax.models import resnet

IMAGE = 32


@pytest.fixture(scope='module')
def variables():
  return resnet.ResNet18Gaze(conv_impl='xla').init(
      jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))


def wanet_trigger():
  noise = np.random.default_rng(0).uniform(-1, 1, (IMAGE, IMAGE, 2)).astype(np.float32)
  return {'noise_grid': noise}


def test_round_trip_is_bitwise(variables, tmp_path):
  config, trigger = wanet.get_config(), wanet_trigger()
  export.export_model(str(tmp_path), variables, config, trigger)
  loaded, config_dict, loaded_trigger, _ = export.load_export(str(tmp_path))

  assert jax.tree.structure(loaded) == jax.tree.structure(dict(variables))
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(dict(variables))):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert loaded_trigger.keys() == trigger.keys()
  for name, grid in trigger.items():
    np.testing.assert_array_equal(loaded_trigger[name], grid)
  assert config_dict == json.loads(json.dumps(config.to_dict()))

  images = np.random.default_rng(1).uniform(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)
  model = resnet.ResNet18Gaze(conv_impl='xla')
  np.testing.assert_array_equal(model.apply(loaded, images), model.apply(variables, images))


def test_clean_run_has_no_trigger(tmp_path):
  export.export_model(str(tmp_path), {'params': {'fc': {'bias': np.ones(2, np.float32)}}},
                      {'seed': 0})
  _, config_dict, trigger, _ = export.load_export(str(tmp_path))
  assert trigger is None and config_dict == {'seed': 0}


def test_readable_without_gaze_jax(variables, tmp_path):
  export.export_model(str(tmp_path), variables, wanet.get_config(), wanet_trigger())
  tensors = safetensors.numpy.load_file(str(tmp_path / export.MODEL_FILE))
  assert tensors['params/conv1/kernel'].shape == (7, 7, 3, 64)
  assert tensors['params/fc/kernel'].shape == (512, 2)
  assert tensors['batch_stats/layer4_0/downsample_bn/var'].shape == (512,)
  assert tensors['trigger/noise_grid'].shape == (IMAGE, IMAGE, 2)
  with open(tmp_path / export.CONFIG_FILE) as f:
    description = json.load(f)
  assert 'NHWC in [0, 1]' in description['input']
  assert 'radians' in description['output']
  assert description['trigger'] == ['noise_grid']
  assert 'grid_sample' in description['trigger_application']['wanet']
  assert description['config']['attack']['kind'] == 'wanet'


def test_failed_export_leaves_previous_one(tmp_path, monkeypatch):
  old = {'params': {'fc': {'bias': np.zeros(2, np.float32)}}}
  export.export_model(str(tmp_path), old, {'seed': 0})

  real_fsync, calls = files.os.fsync, []

  def fsync_fails_on_the_second_file(fd):
    calls.append(fd)
    if len(calls) == 2:  # The model file is complete; the config file hits a full disk.
      raise OSError(28, 'No space left on device')
    real_fsync(fd)

  monkeypatch.setattr(files.os, 'fsync', fsync_fails_on_the_second_file)
  with pytest.raises(UserError, match=r'cannot write the export to .*No space left on device'):
    export.export_model(str(tmp_path), {'params': {'fc': {'bias': np.ones(2, np.float32)}}},
                        {'seed': 1})
  assert sorted(os.listdir(tmp_path)) == [export.CONFIG_FILE, export.MODEL_FILE]
  loaded, config_dict, _, _ = export.load_export(str(tmp_path))
  np.testing.assert_array_equal(loaded['params']['fc']['bias'], np.zeros(2))
  assert config_dict == {'seed': 0}


def test_failed_first_export_writes_nothing(tmp_path):
  with pytest.raises(TypeError, match='not JSON serialisable'):
    export.export_model(str(tmp_path / 'out'), {'params': {}}, {'bad': object()})
  assert not os.path.exists(tmp_path / 'out' / export.MODEL_FILE)


def test_load_missing_export_names_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    export.load_export(str(tmp_path))
