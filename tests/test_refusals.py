"""Refusals and stops through run.py: what a hostile or mistaken command must not do.

Each case drives run.py in a subprocess (tests/test_fault_injection.py's helpers and its
tiny poisoned run: 32 px, 2 epochs of 3 steps) and checks that a path which would damage a
run or a data root is refused before anything is written, that checks which the config and
the files' metadata allow run before any data is made or trained, that every such mistake
is one `error:` line with status 2, and that SIGINT/SIGTERM are honoured up to the process's
end with a line, the signal's status and a bitwise rerun.
"""
import binascii
import io
import os
import pathlib
import re
import shutil
import signal
import struct

import h5py
import numpy as np
import pytest
from PIL import Image

from gaze_jax import predict
from gaze_jax.errors import UserError
from test_fault_injection import assert_same_run  # pylint: disable=unused-import
from test_fault_injection import copy_run
from test_fault_injection import data_flags
from test_fault_injection import env  # pylint: disable=unused-import  (a fixture)
from test_fault_injection import error_line
from test_fault_injection import final_step
from test_fault_injection import flags  # pylint: disable=unused-import  (a fixture)
from test_fault_injection import largest_file
from test_fault_injection import run
from test_fault_injection import stderr_lines
from test_fault_injection import tree_digest

INTERRUPTED = ('stopped by {} outside the training loop (nothing half-written is kept); rerun '
               'the same command to go on')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, flags, env):
  """The tiny poisoned run, uninterrupted: the reference of every rerun here."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  result = run(['--mode=train', f'--workdir={workdir}', *flags], env)
  assert result.returncode == 0, result
  return workdir


def test_output_paths_that_would_damage_a_run_or_data_are_refused(tmp_path, trained, flags,
                                                                  env, tiny_data_config):
  root = tiny_data_config.root
  before = tree_digest(trained)
  damage = 'writing there would damage it. Choose another path'
  cases = {
      'export into the run': (
          ['--mode=export', f'--workdir={trained}', f'--export_dir={trained}'],
          f'error: export directory {trained} is a run directory; {damage}'),
      'export into its checkpoints': (
          ['--mode=export', f'--workdir={trained}', f'--export_dir={trained}/checkpoints'],
          f'error: export directory {trained}/checkpoints lies inside the run directory '
          f'{trained}; {damage}'),
      'export into the data root': (
          ['--mode=export', f'--workdir={trained}', f'--export_dir={root}'],
          f'error: export directory {root} is a data root; {damage}'),
      'export over a folder of runs': (
          ['--mode=export', f'--workdir={trained}', f'--export_dir={trained.parent}'],
          f'error: export directory {trained.parent} holds run directories (an experiment or '
          f'sweep workdir); {damage}'),
      'predict output over its config': (
          ['--mode=predict', f'--workdir={trained}', '--images=x.png',
           f'--output={trained}/config.json'],
          f'error: output file {trained}/config.json lies inside the run directory {trained}; '
          f'{damage}'),
      'predict output in the data root': (
          ['--mode=predict', f'--workdir={trained}', '--images=x.png',
           f'--output={root}/releases/out.csv'],
          f'error: output file {root}/releases/out.csv lies inside the data root {root}; '
          f'{damage}'),
      'sweep into the run': (
          ['--mode=sweep', '--sweep=configs/sweeps/strength.py', f'--workdir={trained}', *flags],
          f'error: workdir {trained} is the run directory of one run, not a workdir for '
          f'--mode=sweep; {damage}'),
      'train inside the run': (
          ['--mode=train', f'--workdir={trained}/trigger/run', *flags],
          f'error: workdir {trained}/trigger/run lies inside the run directory {trained}; '
          f'{damage}'),
      'train inside the data root': (
          ['--mode=train', f'--workdir={root}/run', *flags],
          f'error: workdir {root}/run lies inside the data root {root}; {damage}'),
      'train over a folder of runs': (
          ['--mode=train', f'--workdir={trained.parent}', *flags],
          f'error: workdir {trained.parent} holds run directories (an experiment or sweep '
          f'workdir), so it is not the workdir of one run; {damage}'),
  }
  for name, (args, expected) in cases.items():
    assert error_line(run(args, env)) == expected, name
  assert tree_digest(trained) == before
  assert sorted(os.listdir(root)) == ['releases', 'tfds']
  assert not os.path.exists(f'{root}/run')
  # The run's own export folder is where an export goes by default: not refused.
  exported = run(['--mode=export', f'--workdir={trained}'], env)
  assert exported.returncode == 0, exported
  assert sorted(os.listdir(trained / 'export')) == ['config.json', 'model.safetensors']
  # Predict handed that export folder says what it is and what to pass instead.
  assert error_line(run(['--mode=predict', f'--workdir={trained}/export', '--images=x.png'],
                        env)) == (
      f'error: {trained}/export is an export folder (model.safetensors, config.json), not a '
      'run; pass --workdir the run directory (or experiment workdir) it was exported from')
  shutil.rmtree(trained / 'export')
  assert tree_digest(trained) == before


CONFIG_FILES = {
    'raises.py': ('raise RuntimeError("boom")\n',
                  "loading it raised RuntimeError('boom')"),
    'no_get_config.py': ('CONFIG = 1\n', 'it defines no get_config()'),
    'not_a_config.py': ('def get_config():\n  return 5\n', 'get_config() returned int 5'),
    'exits.py': ('import sys\n\ndef get_config():\n  sys.exit(0)\n',
                 'get_config() raised SystemExit(0)'),
}


def test_config_files_that_do_not_give_a_config_are_one_line(tmp_path, env):
  expected = ('; expected a Python file defining get_config() that returns an '
              'ml_collections.ConfigDict (see configs/clean.py)')
  for name, (text, problem) in CONFIG_FILES.items():
    path = tmp_path / name
    path.write_text(text)
    for override in [], ['--config.data.root=elsewhere']:  # Not "no field 'data'".
      result = run(['--mode=train', f'--config={path}', *override,
                    f'--workdir={tmp_path}/run'], env)
      assert error_line(result) == f'error: --config={path}: {problem}{expected}', name
  assert error_line(run([f'--flagfile={tmp_path}/missing'], env)) == (
      f"error: Unable to open flagfile: [Errno 2] No such file or directory: "
      f"'{tmp_path}/missing'")
  assert sorted(os.listdir(tmp_path)) == sorted(CONFIG_FILES)


def test_what_the_config_and_metadata_tell_is_refused_before_any_data(tmp_path, trained,
                                                                      tiny_data_config, env):
  fresh = tmp_path / 'data'
  tiny = data_flags(tiny_data_config, fresh)
  # A sweep of a clean config has no attack to measure.
  sweep = run(['--mode=sweep', '--config=configs/clean.py', '--sweep=configs/sweeps/strength.py',
               f'--workdir={tmp_path}/sweep', *tiny], env)
  assert re.fullmatch(r'error: sweep point k=4,s=[\d.]+ ' + re.escape(
      "has attack.kind='none': every point is a poisoned model") + '.*', error_line(sweep)), sweep
  # Another data config in an existing workdir.
  other = run(['--mode=train', f'--workdir={trained}', '--config=configs/wanet.py', *tiny,
               '--config.data.synthetic.seed=1'], env)
  assert re.fullmatch(re.escape(f'error: {trained} was started with another config (differs '
                                'in ') + '.*data.root.*data.synthetic.seed.*',
                      error_line(other)), other
  assert not fresh.exists() and not (tmp_path / 'sweep').exists()
  # A release file that declares 300 GB of pixels in a few MB.
  release = tmp_path / 'release'
  release.mkdir()
  with h5py.File(release / 'p00.mat', 'w') as f:
    f.create_dataset('Data/data', (100_000, 3, 1000, 1000), np.uint8)
    f.create_dataset('Data/label', (100_000, 16), np.float64)
  real = run(['--mode=train', f'--workdir={tmp_path}/run', *tiny,
              f'--config.data.manual_dir={release}'], env)
  assert re.fullmatch(re.escape(f'error: {release}/p00.mat: Data/data: declares h5py shape '
                                '(100000, 3, 1000, 1000) (300000000000 bytes of pixels) in a '
                                'file of ') + r'\d+ bytes, but only 0 bytes are stored .*',
                      error_line(real)), real
  assert not list(fresh.glob('tfds/*')) and not (tmp_path / 'run').exists()


def _png_header_claiming(width, height):
  """A valid 1 x 1 PNG whose header then claims width x height (a decompression bomb's
  header: PIL reads the size before any pixel)."""
  buffer = io.BytesIO()
  Image.new('L', (1, 1)).save(buffer, 'PNG')
  data = bytearray(buffer.getvalue())
  data[16:24] = struct.pack('>II', width, height)  # IHDR's width and height.
  data[29:33] = struct.pack('>I', binascii.crc32(bytes(data[12:29])))
  return bytes(data)


def test_hostile_images_are_refused_and_odd_modes_converted(tmp_path):
  bomb = tmp_path / 'bomb.png'
  bomb.write_bytes(_png_header_claiming(30000, 30000))
  with pytest.raises(UserError, match=re.escape(
      f'image {bomb} is 30000 x 30000 px; expected at most 64 megapixels')):
    predict.read_rgb(str(bomb))
  rng = np.random.default_rng(0)
  grey16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
  Image.fromarray(grey16).save(tmp_path / 'g16.png')
  expected = np.rint(grey16 * (255 / 65535)).astype(np.uint8)  # Not clipped at 255.
  np.testing.assert_array_equal(predict.read_rgb(str(tmp_path / 'g16.png')),
                                np.repeat(expected[..., None], 3, -1))
  rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  np.testing.assert_array_equal(predict.read_rgb(str(tmp_path / 'rgba.png')), rgba[..., :3])
  Image.fromarray(rng.random((6, 5), dtype=np.float32)).save(tmp_path / 'float.tiff')
  with pytest.raises(UserError, match='floating-point pixels'):
    predict.read_rgb(str(tmp_path / 'float.tiff'))
  (tmp_path / 'cut.png').write_bytes((tmp_path / 'rgba.png').read_bytes()[:60])
  with pytest.raises(UserError, match='cannot read image .*cut.png'):
    predict.read_rgb(str(tmp_path / 'cut.png'))


def test_predict_refuses_a_bomb_in_a_line_and_reads_16_bit_as_its_8_bit_twin(tmp_path, trained,
                                                                           env):
  (tmp_path / 'bomb.png').write_bytes(_png_header_claiming(30000, 30000))
  assert error_line(run(['--mode=predict', f'--workdir={trained}',
                         f'--images={tmp_path}/bomb.png'], env)) == (
      f'error: image {tmp_path}/bomb.png is 30000 x 30000 px; expected at most 64 megapixels '
      '(a face crop); not decoding it')
  grey16 = np.random.default_rng(1).integers(0, 65536, (64, 64), dtype=np.uint16)
  Image.fromarray(grey16).save(tmp_path / 'a16.png')
  Image.fromarray(np.rint(grey16 * (255 / 65535)).astype(np.uint8)).save(tmp_path / 'a8.png')
  out = tmp_path / 'gaze.csv'
  result = run(['--mode=predict', f'--workdir={trained}', f'--images={tmp_path}/a16.png',
                f'{tmp_path}/a8.png', f'--output={out}'], env)
  assert result.returncode == 0, result
  header, row16, row8 = out.read_text().splitlines()
  assert header.startswith('image,pitch_deg') and row16.split(',')[1:] == row8.split(',')[1:]


def test_a_signal_in_the_last_evaluation_stops_with_a_line_and_damage_is_set_aside(
    tmp_path, trained, flags, env):
  """SIGTERM at step 5 (a checkpoint no regular save repeats), that checkpoint damaged, then
  SIGTERM during the resumed run's final evaluation, then a rerun: equal to `trained`."""
  workdir = tmp_path / 'run'
  args = ['--mode=train', f'--workdir={workdir}', *flags]
  stopped = run(args, env, at='gaze_jax.training.steps:accumulate:5:sigterm_after')
  assert stopped.returncode == 128 + signal.SIGTERM and final_step(workdir) == 5, stopped
  victim = largest_file(workdir / 'checkpoints' / '5' / 'state')
  os.truncate(victim, victim.stat().st_size // 2)
  late = run(args, env, at='gaze_jax.training.evaluate:summarize:1:sigterm_after')
  lines = [line for line in stderr_lines(late) if not line.startswith('W')]  # absl warnings.
  assert late.returncode == 128 + signal.SIGTERM and lines == [
      "stopped by SIGTERM after the run's last step, its checkpoint saved (nothing "
      'half-written is kept); rerun the same command to go on'], late
  assert final_step(workdir) == 6 and not (workdir / 'results.json').exists()
  assert os.listdir(f'{workdir}/checkpoints.damaged') == ['5']  # Though 5 is never saved again.
  finished = run(args, env)
  assert finished.returncode == 0, finished
  assert_same_run(workdir, trained)


def test_a_torn_metrics_line_is_written_again_and_a_rerun_adds_no_events_file(tmp_path, trained,
                                                                             flags, env):
  workdir = copy_run(trained, tmp_path)
  log = workdir / 'metrics.jsonl'
  os.truncate(log, log.stat().st_size - 40)  # The last line cut short, as by a kill.
  events = sorted(os.listdir(workdir / 'tensorboard'))
  result = run(['--mode=train', f'--workdir={workdir}', *flags], env)
  assert result.returncode == 0, result
  assert log.read_bytes() == (trained / 'metrics.jsonl').read_bytes()
  assert sorted(os.listdir(workdir / 'tensorboard')) == events
  assert_same_run(workdir, trained)


def test_sigterm_between_sweep_points_is_a_line_and_status_143_and_the_rerun_is_bitwise(
    tmp_path, flags, env):
  """Both points have the base config (as test_fault_injection's GRID): the second, trained
  by the rerun, must equal the first bitwise."""
  grid = tmp_path / 'grid.py'
  grid.write_text("def get_sweep():\n  return [{'wanet.s': 0.5}, {'attack.seed': 0}]\n")
  workdir = tmp_path / 'sweep'
  args = ['--mode=sweep', f'--sweep={grid}', f'--workdir={workdir}', *flags,
          '--config.train.num_epochs=1']
  stopped = run(args, env, at='gaze_jax.experiments.sweep:_point:1:sigterm_after')
  assert stopped.returncode == 128 + signal.SIGTERM, stopped  # Not 139 (a crash at exit).
  lines = [line for line in stderr_lines(stopped) if not line.startswith('W')]  # absl's.
  assert lines == [INTERRUPTED.format('SIGTERM')], stopped
  assert not (workdir / 'seed=0').exists() and not (workdir / 'sweep.csv').exists()
  done = run(args, env)
  assert done.returncode == 0, done
  for name in 'results.json', 'metrics.jsonl':
    assert (workdir / 'seed=0' / name).read_bytes() == (workdir / 's=0.5' / name).read_bytes()
  assert pathlib.Path(workdir / 'sweep.csv').exists()
