"""The repository installs as a package: the TFDS builder and the command work from the wheel.

The wheel is built from a copy of the sources (setuptools writes build folders beside them)
without network (the installed setuptools) and installed without its dependencies into a
fresh virtual environment that sees this environment's packages after its own; it is then used from
another folder, so nothing is imported from the checkout.
"""
import os
import pathlib
import shutil
import site
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

READ_BACK = """
import sys
import tensorflow_datasets as tfds
import gaze_jax
import tfds_mpiifacegaze  # Registers the builder.
assert not gaze_jax.__file__.startswith(sys.argv[1]), gaze_jax.__file__
builder = tfds.builder('mpii_face_gaze', config='32', data_dir=sys.argv[3])
builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[2]))
source = builder.as_data_source(split='p01')
print(type(builder).__module__, len(source), source[0]['image'].shape, source[0]['person_id'])
"""


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('package')
  source = tmp / 'source'
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for name in ('gaze_jax', 'tfds_mpiifacegaze'):
    shutil.copytree(ROOT / name, source / name, ignore=ignore)
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, source / name)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                  '--wheel-dir', str(tmp / 'dist'), str(source)], check=True,
                 capture_output=True, timeout=300)
  wheel, = (tmp / 'dist').glob('gaze_jax-*.whl')
  subprocess.run([sys.executable, '-m', 'venv', str(tmp / 'venv')], check=True, timeout=300)
  python = tmp / 'venv' / 'bin' / 'python'
  # This environment's packages (a venv's or the system's), after the new venv's own: a .pth
  # file, since `venv --system-site-packages` would see the base interpreter's only.
  purelib = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_path('
                            '"purelib"))'], check=True, capture_output=True, text=True,
                           timeout=60).stdout.strip()
  pathlib.Path(purelib, 'parent_environment.pth').write_text('\n'.join(site.getsitepackages()))
  subprocess.run([str(python), '-m', 'pip', 'install', '--no-deps', '--no-index', str(wheel)],
                 check=True, capture_output=True, timeout=300)
  return tmp, python


def test_installed_builder_reads_a_release(venv, tiny_release):
  tmp, python = venv
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  out = subprocess.run([str(python), '-c', READ_BACK, str(ROOT), tiny_release,
                        str(tmp / 'tfds')], cwd=tmp, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.splitlines()[-1].split() == [
      'tfds_mpiifacegaze.mpii_face_gaze_dataset_builder', '12', '(32,', '32,', '3)', '1']


def test_installed_command_and_configs(venv):
  tmp, python = venv
  out = subprocess.run([str(tmp / 'venv' / 'bin' / 'gaze-jax'), '--mode=sweep',
                        '--config.wanet.s=1.0'], cwd=tmp, capture_output=True, text=True,
                       timeout=600, check=False)
  # The packaged default config loaded and took the override; the sweep file is missing.
  assert out.returncode == 2 and out.stderr.strip().endswith('--mode=sweep needs --sweep FILE '
                                                             '(e.g. configs/sweeps/'
                                                             'strength.py)'), out.stderr
  assert not (tmp / 'runs').exists()
