"""Predict on user images and export from the CLI, on a tiny saved run (32 px, no dataset)."""
import csv
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gaze_jax import config as config_lib
from gaze_jax import export
from gaze_jax import predict
from gaze_jax.attacks import triggers
from gaze_jax.configs import clean
from gaze_jax.configs import wanet
from gaze_jax.errors import UserError
from gaze_jax.models.resnet import ResNet18Gaze
from gaze_jax.training import init
from gaze_jax.workdir import checkpoints
from gaze_jax.workdir import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32


def tiny_run(base):
  config = base.get_config()
  config.data.image_size = SIZE
  config.model.conv_impl = 'xla'
  config.eval.batch_size = 2  # Three test images: two batches, the last one padded.
  return config_lib.validate(config)


def save_run(run_dir, spec):
  """A run directory as training leaves it, with weights and BatchNorm statistics perturbed."""
  state, trigger = init.initial_state(spec, 1)
  keys = iter(jax.random.split(jax.random.key(1), 200))

  def perturb(path, x):  # Small noise; BatchNorm variances stay positive.
    noise = 0.02 * jax.random.normal(next(keys), x.shape)
    return x + (jnp.abs(noise) if path[-1].key == 'var' else noise)

  state = state.replace(step=jnp.asarray(3, jnp.int32),  # A trained state's step is an array.
                        params=jax.tree_util.tree_map_with_path(perturb, state.params),
                        batch_stats=jax.tree_util.tree_map_with_path(perturb, state.batch_stats))
  ckpts = checkpoints.Checkpoints(os.path.join(run_dir, 'checkpoints'), 2)
  ckpts.save(3, state, trigger, {'history': []})
  ckpts.wait()
  ckpts.close()
  files.write_json(os.path.join(run_dir, 'config.json'), spec.config)
  return state, trigger


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp('run'))
  spec = tiny_run(wanet)
  state, trigger = save_run(run_dir, spec)
  return run_dir, spec, state, trigger


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
  """A folder of face crops of other modes than RGB, at whole multiples of the input size."""
  folder = tmp_path_factory.mktemp('faces')
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(folder / 'a.png')
  Image.fromarray(rng.integers(0, 256, (96, 96), np.uint8)).save(folder / 'b.jpg')
  Image.fromarray(rng.integers(0, 256, (128, 128, 4), np.uint8)).save(folder / 'c.PNG')
  (folder / 'notes.txt').write_text('not an image, not a .png: skipped in folders')
  return str(folder)


def reference(run, paths, trigger=False):
  """Gaze computed independently: PIL box resize (block means), the model applied directly."""
  _, config, state, saved_trigger = run
  images = np.stack([np.asarray(Image.open(p).convert('RGB').resize((SIZE, SIZE), Image.BOX))
                     for p in paths]).astype(np.float32) / 255.0
  if trigger:
    images = triggers.apply_trigger(config.attack, saved_trigger, images)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return np.asarray(ResNet18Gaze(conv_impl='xla').apply(variables, images))


def test_load_run_restores_config_and_checkpoint(run):
  run_dir, config, state, trigger = run
  loaded_run, loaded_state, loaded_trigger = predict.load_run(run_dir)
  assert loaded_run == config and loaded_run.config == config.config
  assert int(loaded_state.step) == 3
  for a, b in zip(jax.tree.leaves(loaded_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(loaded_trigger['noise_grid'], trigger['noise_grid'])


def test_predict_equals_model(run, faces):
  _, config, state, trigger = run
  names, images = predict.load_images([faces], SIZE)
  assert [os.path.basename(n) for n in names] == ['a.png', 'b.jpg', 'c.PNG']
  assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
  pred, _ = predict.predict(config, state, trigger, images, apply_trigger=False)
  np.testing.assert_allclose(pred, reference(run, names), atol=1e-5)


def test_trigger_is_applied_first(run, faces):
  _, config, state, trigger = run
  names, images = predict.load_images([os.path.join(faces, 'a.png'), faces], SIZE)
  assert len(names) == 4  # A file and a folder.
  clean_pred, _ = predict.predict(config, state, trigger, images, apply_trigger=False)
  triggered, _ = predict.predict(config, state, trigger, images, apply_trigger=True)
  np.testing.assert_allclose(triggered, reference(run, names, trigger=True), atol=1e-5)
  assert np.max(np.abs(triggered - clean_pred)) > 1e-4


def test_rows_and_csv(tmp_path):
  pitchyaw = np.array([[0.0, 0.0], [-0.2, 0.3]], np.float32)
  table = predict.rows(['x.png', 'y.png'], pitchyaw)
  np.testing.assert_allclose([[r['pitch_deg'], r['yaw_deg']] for r in table],
                             np.degrees(pitchyaw), rtol=1e-6)
  p, y = pitchyaw[1]
  np.testing.assert_allclose([table[1][c] for c in ('gaze_x', 'gaze_y', 'gaze_z')],
                             [-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)],
                             rtol=1e-6)
  assert [table[0][c] for c in ('gaze_x', 'gaze_y', 'gaze_z')] == [0.0, 0.0, -1.0]

  path = tmp_path / 'gaze.csv'
  predict.write_csv(str(path), table)
  with open(path, newline='') as f:
    read = list(csv.DictReader(f))
  assert tuple(read[0]) == predict.COLUMNS
  assert read[1]['image'] == 'y.png'
  np.testing.assert_allclose(float(read[1]['yaw_deg']), np.degrees(0.3), rtol=1e-6)
  assert predict.format_table(table).splitlines()[0].split() == list(predict.COLUMNS)


def test_image_errors_name_the_path(tmp_path):
  with pytest.raises(UserError, match='missing.png does not exist'):
    predict.load_images([str(tmp_path / 'missing.png')], SIZE)
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'readme.txt').write_text('x')
  with pytest.raises(UserError, match='no PNG or JPEG files in folder .*empty'):
    predict.load_images([str(empty)], SIZE)
  broken = tmp_path / 'broken.png'
  broken.write_text('not a png')
  with pytest.raises(UserError, match='cannot read image .*broken.png'):
    predict.load_images([str(broken)], SIZE)


def test_run_errors(run, tmp_path):
  _, config, state, trigger = run
  with pytest.raises(UserError, match='does not exist'):
    predict.find_run_dir(str(tmp_path / 'nowhere'))
  with pytest.raises(UserError, match='config.json is missing'):
    predict.load_run(str(tmp_path))
  files.write_json(str(tmp_path / 'config.json'), config.config)
  with pytest.raises(UserError, match='no checkpoint in'):
    predict.load_run(str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')  # Nothing created in a wrong workdir.

  clean_config = tiny_run(clean)
  images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
  assert predict.wants_trigger(clean_config, 'wanet')  # Refused by predict, with the reason:
  with pytest.raises(UserError, match="without an attack .*'none'"):
    predict.predict(clean_config, state, {}, images, apply_trigger=True)
  with pytest.raises(UserError, match="--trigger=badnets, but this run's attack is 'wanet'"):
    predict.wants_trigger(config, 'badnets')
  assert not predict.wants_trigger(config, 'none')


def test_experiment_workdir_uses_poisoned_run(tmp_path):
  for name in ('clean', 'poisoned'):
    (tmp_path / name).mkdir()
  assert predict.find_run_dir(str(tmp_path)) == str(tmp_path / 'poisoned')
  shutil.rmtree(tmp_path / 'poisoned')
  assert predict.find_run_dir(str(tmp_path)) == str(tmp_path / 'clean')


def test_cli_predict_and_export(run, faces, tmp_path):
  run_dir, _, state, trigger = run
  experiment_dir = tmp_path / 'experiment'
  shutil.copytree(run_dir, experiment_dir / 'poisoned')

  def cli(*args):
    return subprocess.run([sys.executable, 'run.py', f'--workdir={experiment_dir}', *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)

  a_png, b_jpg = os.path.join(faces, 'a.png'), os.path.join(faces, 'b.jpg')
  out = cli('--mode=predict', '--trigger=wanet', f'--output={tmp_path / "gaze.csv"}',
            '--images', a_png, b_jpg)
  assert out.returncode == 0, out.stderr
  assert f'using the run in {experiment_dir / "poisoned"}' in out.stderr
  with open(tmp_path / 'gaze.csv', newline='') as f:
    read = list(csv.DictReader(f))
  assert [r['image'] for r in read] == [a_png, b_jpg]
  np.testing.assert_allclose([[float(r['pitch_deg']), float(r['yaw_deg'])] for r in read],
                             np.degrees(reference(run, [a_png, b_jpg], trigger=True)),
                             atol=1e-3)

  out = cli('--mode=export')
  assert out.returncode == 0, out.stderr
  variables, config_dict, loaded_trigger, _ = export.load_export(str(experiment_dir / 'export'))
  expected = {'params': state.params, 'batch_stats': state.batch_stats}
  assert jax.tree.structure(variables) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(loaded_trigger['noise_grid'], trigger['noise_grid'])
  assert config_dict['data']['image_size'] == SIZE
