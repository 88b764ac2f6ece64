"""The release a run reads, built once into a TFDS dataset under data.root.

The real MPIIFaceGaze release is read from `data.manual_dir`; without one, a synthetic
release in the same file format is generated under `data.root/releases` (written aside and
renamed, so a folder that exists is complete). Either is built by the TFDS builder
`mpii_face_gaze` at `data.image_size` into `data.root/tfds/NAME`.
"""
import hashlib
import os
import shutil

import tensorflow_datasets as tfds

from gaze_jax.errors import UserError
from tfds_mpiifacegaze import matfile
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib
from tfds_mpiifacegaze import synthesize


def synthetic_release_path(data):
  """Where the synthetic release of DataSpec `data` is kept (named by its settings)."""
  s = data.synthetic
  name = (f'synthetic-{synthesize.RENDER_VERSION}-p{s.persons}-n{s.samples_per_person}'
          f'-s{s.image_size}-seed{s.seed}' + (f'-t{s.texture:g}' if s.texture else ''))
  return os.path.join(data.root, 'releases', name)


def synthetic_release(data):
  """The synthetic release's folder under data.root, generated on first use."""
  s = data.synthetic
  path = synthetic_release_path(data)
  if not os.path.isdir(path):
    tmp = f'{path}.incomplete-{os.getpid()}'
    try:
      synthesize.write_release(tmp, s.persons, s.samples_per_person, s.image_size, s.seed,
                               s.texture)
      os.rename(tmp, path)
    except OSError as e:
      if not os.path.isdir(path):  # Not merely another process having finished first.
        raise UserError(f'cannot write the synthetic release to {path}: {e}') from e
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return path


def prepare(data):
  """Builds (once) and returns the TFDS builder of DataSpec `data`'s release and size."""
  if data.manual_dir:
    manual_dir = os.path.abspath(data.manual_dir)
    # One TFDS data dir per real release folder.
    name = 'real-' + hashlib.sha1(manual_dir.encode()).hexdigest()[:8]
  else:
    manual_dir = synthetic_release(data)
    name = os.path.basename(manual_dir)
  data_dir = os.path.join(data.root, 'tfds', name)
  builder = builder_lib.MPIIFaceGaze(config=str(data.image_size), data_dir=data_dir)
  try:
    if data.manual_dir and not os.path.isdir(builder.data_dir):  # Not built yet.
      check_release(manual_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except matfile.MatFileError as e:  # A damaged or crafted release file: the user's to fix.
    _remove_empty(data_dir)
    raise UserError(str(e)) from e
  except OSError as e:  # An unwritable data.root.
    _remove_empty(data_dir)
    raise UserError(f'cannot build the dataset under {data.root}: {e}') from e
  return builder


def check_release(manual_dir):
  """Validates every person's file of a real release.

  Opens every pXX.mat of a real release, which checks its layout, declared sizes and
  labels from metadata (matfile.ReleaseFile), before the build reads any pixel."""
  for path in builder_lib.person_files(manual_dir).values():
    with matfile.ReleaseFile(path):
      pass


def _remove_empty(directory):
  """Removes the folders a failed build left empty under `directory`, and it if empty;
  files, such as another build's, are kept."""
  if not os.path.isdir(directory):
    return
  for folder, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
    try:
      os.rmdir(folder)
    except OSError:  # Not empty.
      pass
