"""The TFDS builder: splits, decoding, resizing, labels, bad input, failed builds."""
import os
import shutil

import h5py
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from gaze_jax.data import release
from tfds_mpiifacegaze import matfile
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib


def build(manual_dir, data_dir, size=32):
  builder = builder_lib.MPIIFaceGaze(config=str(size), data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def test_registered_with_configs():
  builder = tfds.builder('mpii_face_gaze/64', data_dir='/nonexistent')
  assert isinstance(builder, builder_lib.MPIIFaceGaze)
  assert [c.name for c in builder_lib.MPIIFaceGaze.BUILDER_CONFIGS] == ['224', '112', '64', '48', '32']
  assert builder.info.features['image'].shape == (64, 64, 3)


def test_split_names_and_counts(tiny_data_config):
  builder = release.prepare(tiny_data_config)
  assert sorted(builder.info.splits) == ['p00', 'p01', 'p02']
  assert all(builder.info.splits[p].num_examples == 12 for p in ('p00', 'p01', 'p02'))
  assert len(builder.as_data_source(split='p00+p02')) == 24
  part = builder.as_data_source(split='p01[:50%]')
  assert [(part[i]['person_id'], part[i]['index']) for i in range(len(part))] == [
      (1, i) for i in range(6)]


def test_examples_carry_the_release_exactly(tiny_data_config, tiny_release):
  builder = release.prepare(tiny_data_config)
  for person in range(3):
    source = builder.as_data_source(split=f'p{person:02d}')
    with matfile.ReleaseFile(os.path.join(tiny_release, matfile.file_name(person))) as f:
      labels = f.labels
      images = np.concatenate([im for _, im in f.images()])
    expected_images = builder_lib.resize(images, 32)
    landmarks = builder_lib.scale_landmarks(labels[:, 4:].reshape(-1, 6, 2), 64, 64, 32)
    for i in range(12):
      ex = source[i]
      assert (ex['person_id'], ex['index']) == (person, i)
      assert ex['image'].dtype == np.uint8 and ex['image'].shape == (32, 32, 3)
      np.testing.assert_array_equal(ex['image'], expected_images[i])
      np.testing.assert_array_equal(ex['gaze'], labels[i, 0:2].astype(np.float32))
      np.testing.assert_array_equal(ex['head_pose'], labels[i, 2:4].astype(np.float32))
      np.testing.assert_array_equal(ex['landmarks'], landmarks[i].astype(np.float32))


def test_known_colours_come_out_upright_rgb(tmp_path):
  # Quadrants of a 64 x 48 (H x W) image in known colours; the writer's layout is
  # checked against MATLAB's in test_matfile.
  image = np.zeros((1, 64, 48, 3), np.uint8)
  image[:, :32, :24] = [255, 0, 0]      # Top left: red.
  image[:, :32, 24:] = [0, 255, 0]      # Top right: green.
  image[:, 32:, :24] = [0, 0, 255]      # Bottom left: blue.
  image[:, 32:, 24:] = [200, 150, 100]  # Bottom right: skin-like.
  label = np.zeros((1, 16))
  label[0, 4:] = [5, 10, 40, 10, 5, 60, 40, 60, 10, 30, 20, 30]
  os.makedirs(tmp_path / 'release')
  matfile.write_release_file(tmp_path / 'release/p00.mat', [(image, label)], 1, 64, 48)
  ex = build(tmp_path / 'release', tmp_path / 'tfds').as_data_source(split='p00')[0]
  img = ex['image']
  assert img[:16, :16].reshape(-1, 3).tolist() == [[255, 0, 0]] * 256
  assert img[:16, 16:].reshape(-1, 3).tolist() == [[0, 255, 0]] * 256
  assert img[16:, :16].reshape(-1, 3).tolist() == [[0, 0, 255]] * 256
  assert img[16:, 16:].reshape(-1, 3).tolist() == [[200, 150, 100]] * 256
  # x scales by 32 / 48, y by 32 / 64, about pixel centres.
  np.testing.assert_allclose(ex['landmarks'][0], [(5 + 0.5) * 32 / 48 - 0.5, 10 * 0.5 - 0.25])


def area_resize_reference(image, size):
  """Exact area averaging, independently: nearest-neighbour upsampling by k so that
  output pixels cover whole blocks, then block means."""
  n = image.shape[0]
  k = size // np.gcd(n, size)
  fine = np.repeat(np.repeat(image.astype(np.float64), k, 0), k, 1)
  block = n * k // size
  return fine.reshape(size, block, size, block, 3).mean((1, 3))


@pytest.mark.parametrize('n_in, size', [(64, 32), (448, 64), (448, 224), (100, 32), (128, 112),
                                        (64, 112)])
def test_resize_is_area_averaging(n_in, size):
  rng = np.random.default_rng(n_in)
  smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).resize(
      (n_in, n_in), Image.BILINEAR))
  image = np.clip(smooth.astype(int) + rng.integers(-40, 41, smooth.shape), 0, 255)
  out = builder_lib.resize(image.astype(np.uint8)[None], size)[0]
  assert out.shape == (size, size, 3) and out.dtype == np.uint8
  assert np.abs(out - area_resize_reference(image, size)).max() <= 1.0  # uint8 rounding.


def test_landmark_scaling_follows_the_pixels():
  image = np.zeros((1, 64, 64, 3), np.uint8)
  image[0, 20:24, 36:40] = 255  # A block centred at (x, y) = (37.5, 21.5).
  for size in (32, 16):
    small = builder_lib.resize(image, size)[0, ..., 0].astype(float)
    ys, xs = np.mgrid[:size, :size]
    centroid = [(xs * small).sum() / small.sum(), (ys * small).sum() / small.sum()]
    np.testing.assert_allclose(builder_lib.scale_landmarks(np.array([37.5, 21.5]), 64, 64, size),
                               centroid, atol=1e-9)


def copy_release(tiny_release, dest, persons=(0, 1, 2)):
  os.makedirs(dest)
  for p in persons:
    shutil.copy(os.path.join(tiny_release, matfile.file_name(p)), dest)
  return dest


def test_missing_manual_dir_names_files_and_page(tmp_path):
  with pytest.raises(AssertionError) as err:
    build(tmp_path / 'nowhere', tmp_path / 'tfds')
  assert 'p00.mat ... p14.mat' in str(err.value) and builder_lib.HOMEPAGE in str(err.value)


def test_no_release_files(tmp_path):
  os.makedirs(tmp_path / 'release')
  (tmp_path / 'release/readme.txt').write_text('hello')
  with pytest.raises(FileNotFoundError, match=r'release: expected the normalized MPIIFaceGaze '
                                              r'files.*missing: p00\.mat \.\.\. p14\.mat; '
                                              r'found: none.*perceptualui'):
    build(tmp_path / 'release', tmp_path / 'tfds')


def test_missing_person_file(tiny_release, tmp_path):
  release = copy_release(tiny_release, tmp_path / 'release', persons=(0, 2))
  with pytest.raises(FileNotFoundError, match=r'missing: p01\.mat; found: p00\.mat, p02\.mat'):
    build(release, tmp_path / 'tfds')


def assert_nothing_built(data_dir):
  builder = builder_lib.MPIIFaceGaze(config='32', data_dir=str(data_dir))
  assert not builder.is_prepared()
  variant = data_dir / 'mpii_face_gaze' / '32'
  assert not variant.exists() or not os.listdir(variant)  # No version dir, no leftovers.
  with pytest.raises(KeyError, match='has not been generated'):
    tfds.data_source('mpii_face_gaze/32', data_dir=str(data_dir), split='p00', download=False)


def test_truncated_file_fails_before_any_split(tiny_release, tmp_path):
  release = copy_release(tiny_release, tmp_path / 'release')
  whole = (release / 'p02.mat').read_bytes()
  (release / 'p02.mat').write_bytes(whole[:len(whole) // 2])
  with pytest.raises(matfile.MatFileError, match=r'p02\.mat: .*truncated'):
    build(release, tmp_path / 'tfds')
  assert_nothing_built(tmp_path / 'tfds')
  (release / 'p02.mat').write_bytes(whole)  # Repaired, the next build completes.
  assert len(build(release, tmp_path / 'tfds').as_data_source(split='p02')) == 12


def test_corrupt_pixels_mid_build_leave_no_dataset(tiny_release, tmp_path):
  release = copy_release(tiny_release, tmp_path / 'release', persons=(0, 1))
  with matfile.ReleaseFile(os.path.join(tiny_release, 'p02.mat')) as f:
    images, labels = np.concatenate([im for _, im in f.images()]), f.labels
  # Valid metadata (double pixels, as real files may have), a NaN in sample 10:
  # found only while p02 is being generated, after p00 and p01 were written.
  matfile.write_release_file(release / 'p02.mat', [(images, labels)], 12, 64, 64)
  with h5py.File(release / 'p02.mat', 'r+') as f:
    data = f['Data/data'][()].astype(np.float64)
    data[10, 0, 5, 5] = np.nan
    del f['Data/data']
    f['Data/data'] = data
  with pytest.raises(matfile.MatFileError, match=r'p02\.mat: Data/data: .*sample 10'):
    build(release, tmp_path / 'tfds')
  assert_nothing_built(tmp_path / 'tfds')
