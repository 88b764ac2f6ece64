"""TFDS builder `mpii_face_gaze`: the normalized MPIIFaceGaze release, one split per person.

Reads `p00.mat`, `p01.mat`, ... (however many, contiguous from p00; the real release
has 15) from the manual dir, streaming each file in chunks, and writes array_record
files with zlib-compressed image tensors, so that neither building nor reading needs
TensorFlow (read with `tfds.data_source`). Builder configs are output sizes: '224' as
in the study, '112', '64' and '48' for CPU work, '32' for tests and fast recipes. Splits
keep the file order (shuffling disabled), so `'p03[:80%]'` is the first 80% of person 3's samples.
"""
import os
import re

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from tfds_mpiifacegaze import matfile

IMAGE_SIZES = (224, 112, 64, 48, 32)
HOMEPAGE = 'https://www.perceptualui.org/research/datasets/MPIIFaceGaze/'
_FILE_RE = re.compile(r'p(\d\d)\.mat')


def resize(images, size):
  """Area-averaging resize of uint8 (n, H, W, 3) images to (n, size, size, 3).

  Each output pixel is the mean of the input area it covers, weighted by overlap
  (anti-aliased: no input pixel is skipped). Whole factors, e.g. 448 -> 224, 112,
  64, 32, take PIL's box filter, which is then exactly the block mean, and fast.
  Upscaling, should a source be smaller, takes the covering pixel or blends two.
  """
  height, width = images.shape[1:3]
  if (height, width) == (size, size):
    return images
  if height % size == 0 and width % size == 0:
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BOX))
                     for im in images])
  out = np.einsum('yi,nijc,xj->nyxc', _area_weights(height, size),
                  images.astype(np.float32), _area_weights(width, size), optimize=True)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _area_weights(n_in, n_out):
  """(n_out, n_in): the share of output pixel i's area that input pixel j covers."""
  edges = np.arange(n_out + 1) * (n_in / n_out)
  overlap = np.clip(np.minimum(edges[1:, None], np.arange(1, n_in + 1))
                    - np.maximum(edges[:-1, None], np.arange(n_in)), 0, None)
  return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def scale_landmarks(landmarks, height, width, size):
  """(..., 2) pixel coordinates (x, y) of a height x width image -> of size x size.

  Pixel centres are at integer coordinates in both, so the image edges are at -0.5.
  """
  scale = np.array([size / width, size / height])
  return (landmarks + 0.5) * scale - 0.5


def person_files(manual_dir):
  """{person: path} of p00.mat ... in manual_dir; contiguous from p00, else an error."""
  manual_dir = os.fspath(manual_dir)
  names = os.listdir(manual_dir) if os.path.isdir(manual_dir) else []
  persons = sorted(int(m.group(1)) for m in map(_FILE_RE.fullmatch, names) if m)
  missing = sorted(set(range(max(persons, default=-1) + 1)) - set(persons))
  if not persons or missing:
    found = ', '.join(matfile.file_name(p) for p in persons) or 'none'
    wanted = ', '.join(matfile.file_name(p) for p in missing) or 'p00.mat ... p14.mat'
    raise FileNotFoundError(
        f'{manual_dir}: expected the normalized MPIIFaceGaze files p00.mat, p01.mat, ... '
        f'(contiguous from p00; the real release has p00.mat ... p14.mat); missing: '
        f'{wanted}; found: {found}. {MPIIFaceGaze.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  return {p: os.path.join(manual_dir, matfile.file_name(p)) for p in persons}


def examples(path, person, size, chunk_size=32):
  """Yields (index, feature dict) for one person's file, images resized to size."""
  with matfile.ReleaseFile(path) as f:
    labels = f.labels
    landmarks = scale_landmarks(labels[:, matfile.LANDMARKS].reshape(-1, 6, 2),
                                f.height, f.width, size).astype(np.float32)
    for start, images in f.images(chunk_size):
      for i, image in enumerate(resize(images, size), start):
        yield i, {
            'image': image,
            'gaze': labels[i, matfile.GAZE].astype(np.float32),
            'head_pose': labels[i, matfile.HEAD_POSE].astype(np.float32),
            'landmarks': landmarks[i],
            'person_id': person,
            'index': i,
        }


class MPIIFaceGaze(tfds.core.GeneratorBasedBuilder):
  """Normalized MPIIFaceGaze face images with gaze, head pose and landmarks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name=str(s), description=f'Faces resized to {s}x{s}.')
      for s in IMAGE_SIZES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download the normalized release (MPIIFaceGaze_normalized.zip) from {HOMEPAGE} '
      '(registration may be needed), unzip it and point the manual dir at the folder '
      'holding p00.mat ... p14.mat.')

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')  # TFDS's default needs TensorFlow.
    super().__init__(**kwargs)

  def _info(self):
    size = int(self.builder_config.name)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8,
                                          encoding='zlib'),
            'gaze': tfds.features.Tensor(shape=(2,), dtype=np.float32),
            'head_pose': tfds.features.Tensor(shape=(2,), dtype=np.float32),
            'landmarks': tfds.features.Tensor(shape=(matfile.NUM_LANDMARKS, 2),
                                              dtype=np.float32),
            'person_id': tfds.features.Tensor(shape=(), dtype=np.int32),
            'index': tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage=HOMEPAGE,
        disable_shuffling=True,
        citation="""@article{zhang2017mpiigaze,
  title={MPIIGaze: Real-World Dataset and Deep Appearance-Based Gaze Estimation},
  author={Zhang, Xucong and Sugano, Yusuke and Fritz, Mario and Bulling, Andreas},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2019}}""",
    )

  def _split_generators(self, dl_manager):
    files = person_files(dl_manager.manual_dir)
    for path in files.values():  # Every file's layout and labels before any image.
      matfile.ReleaseFile(path).close()
    return {f'p{p:02d}': self._generate_examples(path, p) for p, path in files.items()}

  def _generate_examples(self, path, person):
    yield from examples(path, person, int(self.builder_config.name))
