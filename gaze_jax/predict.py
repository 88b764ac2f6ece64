"""Using a trained run on the user's own face crops: load the run, read images, predict gaze.

A user who trained a model wants its gaze on new images, and for a poisoned run wants to
see the backdoor act on them: `predict` optionally applies the run's saved trigger first,
exactly as evaluation does. Images are resized to the run's input size by the dataset
builder's own area-averaging resize, so they match what the model was trained on. Output
rows give (pitch, yaw) in degrees and the 3-D unit gaze vector
(`geometry.pitchyaw_to_vector`).
"""
import csv
import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gaze_jax import geometry
from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.data import device
from gaze_jax.errors import UserError
from gaze_jax.report import assemble
from gaze_jax.training import runs
from gaze_jax.training import state as state_lib
from gaze_jax.workdir import files
from gaze_jax.workdir import guard
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
COLUMNS = ('image', 'pitch_deg', 'yaw_deg', 'gaze_x', 'gaze_y', 'gaze_z')
EXPERIMENT_RUNS = ('poisoned', 'clean')  # Else, a folder holding runs: by preference.
MAX_IMAGE_PIXELS = 64 * 10**6  # Larger images are refused before they are decoded.


def find_run_dir(workdir):
  """Finds the run directory to predict with in `workdir`.

  The run directory of `workdir`: itself; for a finished experiment its main poisoned
  model (report.assemble.main_arm); else its poisoned/ (else clean/) run."""
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist')
  if guard.is_export_dir(workdir) and not guard.is_run_dir(workdir):
    raise UserError(f'{workdir} is an export folder (model.safetensors, config.json), not a run; '
                    'pass --workdir the run directory (or experiment workdir) it was exported '
                    'from')
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    found = assemble.main_arm(workdir)
    if found:
      return os.path.join(*found)
    for name in EXPERIMENT_RUNS:
      if os.path.isdir(os.path.join(workdir, name)):
        return os.path.join(workdir, name)
  return workdir


def load_run(run_dir):
  """(RunSpec, state, trigger) of the newest intact checkpoint in `run_dir`."""
  run = runs.load(run_dir)
  state, trigger = runs.restore(run_dir, run)
  return run, state, trigger


def wants_trigger(run, kind):
  """Whether `--trigger=kind` asks for the run's trigger: 'none', or the run's attack kind."""
  if kind == 'none':
    return False
  if run.attack.kind not in ('none', kind):  # A clean run is refused by `predict`.
    raise UserError(f"--trigger={kind}, but this run's attack is {run.attack.kind!r}; "
                    f'use --trigger={run.attack.kind} or --trigger=none')
  return True


def _image_files(path):
  if os.path.isdir(path):
    found = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
      raise UserError(f'no PNG or JPEG files in folder {path}')
    return found
  if not os.path.exists(path):
    raise UserError(f'image path {path} does not exist')
  return [path]


def load_images(paths, image_size):
  """(names, uint8 (N, S, S, 3)) of image files and folders of them, resized to S px.

  A folder contributes its .png/.jpg/.jpeg files (not subfolders) in name order. Images
  are converted to RGB and resized to S x S as the dataset is (a non-square crop is
  stretched, so pass square face crops).
  """
  names, images = [], []
  for path in paths:
    for name in _image_files(path):
      names.append(name)
      images.append(builder.resize(read_rgb(name)[None], image_size)[0])
  if not names:
    raise UserError('no images given (--images PATH...)')
  return names, np.stack(images)


def read_rgb(name):
  """uint8 (H, W, 3) RGB pixels of an image file; a hostile or unusable file is a UserError.

  The size is checked from the header before any pixel is decoded (a decompression bomb
  declares a huge one in a small file); 16-bit and 32-bit integer images are scaled to 8 bits
  (as PIL's convert would clip them), palette, grey, alpha and CMYK images converted to RGB;
  floating-point images, which have no agreed range, are refused.
  """
  limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # Ours, below, from the header.
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(name) as image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
          raise UserError(f'image {name} is {width} x {height} px; expected at most '
                          f'{MAX_IMAGE_PIXELS // 10**6} megapixels (a face crop); not decoding it')
        if image.mode.startswith('I'):  # 'I;16', 'I;16B', 'I': integer grey levels.
          grey = np.asarray(image).astype(np.int64)
          top = 65535 if image.mode.startswith('I;16') or grey.max(initial=0) > 255 else 255
          grey = np.rint(np.clip(grey, 0, top) * (255 / top)).astype(np.uint8)
          return np.repeat(grey[..., None], 3, axis=-1)
        if image.mode == 'F':
          raise UserError(f'image {name} has floating-point pixels (PIL mode F); expected 8- '
                          'or 16-bit RGB or grey levels')
        return np.asarray(image.convert('RGB'))
  except UserError:
    raise
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
          Image.DecompressionBombWarning) as e:  # UnidentifiedImageError is an OSError.
    raise UserError(f'cannot read image {name}: {" ".join(str(e).split())}') from e
  finally:
    Image.MAX_IMAGE_PIXELS = limit


@functools.partial(jax.jit, static_argnames=('model', 'spec'))
def _forward(variables, trigger, images_uint8, *, model, spec):
  images = device.to_unit_range(images_uint8)
  if spec is not None:
    images = triggers.apply_trigger(spec, trigger, images)
  return model.apply(variables, images, train=False)


def load_classes(run_dir):
  """A classifier run's classes (data.classes.fit) from RUN/classes/*.npy, no pickles."""
  folder = os.path.join(run_dir, 'classes')
  if not os.path.isdir(folder):
    raise UserError(f'{folder} is missing: this classifier run was not trained to the end')
  return {name[:-4]: np.load(os.path.join(folder, name), allow_pickle=False)
          for name in os.listdir(folder) if name.endswith('.npy')}


def predict(run, state, trigger, images_uint8, apply_trigger, classes=None):
  """Predicts the gaze (and a classifier's class) of uint8 images.

  (gaze (N, 2) pitch, yaw in radians, classes (N,) or None) of uint8 images, optionally
  with the run's trigger applied. A classifier's gaze is its predicted class's centre; a
  binned regressor's, the expectation of its bins' centres (`classes`: the run's, both)."""
  spec = run.attack
  if apply_trigger and (spec.kind == 'none' or not trigger):
    raise UserError('this run was trained without an attack (attack.kind='
                    f"{spec.kind!r}), so it has no trigger to apply")
  model = state_lib.model(run)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  forward = functools.partial(_forward, variables, trigger, model=model,
                              spec=spec if apply_trigger else None)
  n = len(images_uint8)
  batch = min(run.eval.batch_size, n)
  outputs = []
  for start in range(0, n, batch):  # The last batch is padded: one compiled shape.
    chunk = images_uint8[start:start + batch]
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    outputs.append(np.asarray(forward(padded))[:len(chunk)])
  outputs = np.concatenate(outputs)
  if run.task.kind == 'regression':
    return outputs, None
  if run.task.kind == 'binned':  # The softmax expectation of the bin centres.
    return np.asarray(classes_lib.expected_gaze(outputs, classes)), None
  labels = np.argmax(outputs, axis=-1)
  return np.asarray(classes['centres'])[labels], labels


def rows(names, pitchyaw, labels=None):
  """The output rows of the predictions, one per image.

  One dict per image (COLUMNS): pitch and yaw in degrees and the unit gaze vector, and
  for a classifier its class."""
  degrees = np.degrees(pitchyaw)
  vectors = np.asarray(geometry.pitchyaw_to_vector(jnp.asarray(pitchyaw)))
  table = [dict(zip(COLUMNS, (name, *map(float, d), *map(float, v))))
           for name, d, v in zip(names, degrees, vectors)]
  if labels is not None:
    for row, label in zip(table, labels):
      row['class'] = int(label)
  return table


def write_csv(path, table):
  """Writes `rows`' output with a header line."""
  def write(f):
    writer = csv.DictWriter(f, fieldnames=list(table[0]), lineterminator='\n')
    writer.writeheader()
    writer.writerows(table)
  try:
    files.write_atomic(path, write)
  except OSError as e:
    raise UserError(f'cannot write {path}: {e}') from e


def format_table(table):
  """`rows`' output as aligned plain text: degrees to 2 decimals, vectors to 4."""
  extra = [c for c in table[0] if c not in COLUMNS]  # A classifier's class.
  lines = [list(COLUMNS) + extra]
  for row in table:
    lines.append([row['image'], f"{row['pitch_deg']:.2f}", f"{row['yaw_deg']:.2f}",
                  *(f'{row[c]:.4f}' for c in COLUMNS[3:]), *(str(row[c]) for c in extra)])
  widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
  return '\n'.join('  '.join([line[0].ljust(widths[0])] +
                             [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])])
                   for line in lines)
