"""The pXX.mat layout: what the writer produces, what the reader accepts and rejects."""
import h5py
import numpy as np
import pytest

from tfds_mpiifacegaze import matfile


def matlab_layout(images_rgb):
  """h5py's view of MATLAB's Data.data: [H, W, C, N] BGR with the axes reversed."""
  matlab = np.moveaxis(images_rgb[..., ::-1], 0, -1)  # (H, W, C, N), BGR.
  return matlab.transpose(3, 2, 1, 0)                  # (N, C, W, H).


def write_raw(path, data, label):
  """A file written with h5py directly, independently of matfile's writer."""
  with h5py.File(path, 'w', userblock_size=512) as f:
    if data is not None:
      f['Data/data'] = data
    if label is not None:
      f['Data/label'] = label
  return str(path)


def samples(n=3, height=6, width=5, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
  images[:, 0, 0] = [255, 0, 0]  # Top-left pixel pure red (RGB).
  labels = rng.normal(size=(n, matfile.LABEL_WIDTH))
  return images, labels


def test_writer_layout(tmp_path):
  images, labels = samples()
  path = tmp_path / 'p00.mat'
  matfile.write_release_file(path, [(images[:2], labels[:2]), (images[2:], labels[2:])],
                             3, 6, 5)
  raw = path.read_bytes()
  assert raw[:19] == b'MATLAB 7.3 MAT-file'
  assert b'HDF5 schema 1.00 .' in raw[:116]
  assert raw[116:128] == b'\x00' * 8 + b'\x00\x02IM'
  assert raw[512:520] == b'\x89HDF\r\n\x1a\n'  # HDF5 superblock after the userblock.
  with h5py.File(path, 'r') as f:
    assert f.userblock_size == 512
    assert f['Data'].attrs['MATLAB_class'] == b'struct'
    assert [bytes(x).decode() for x in f['Data'].attrs['MATLAB_fields']] == ['data', 'label']
    data, label = f['Data/data'], f['Data/label']
    assert (data.shape, data.dtype) == ((3, 3, 5, 6), np.uint8)
    assert (label.shape, label.dtype) == ((3, 16), np.float64)
    assert data.attrs['MATLAB_class'] == b'uint8'
    assert label.attrs['MATLAB_class'] == b'double'
    np.testing.assert_array_equal(data[()], matlab_layout(images))
    np.testing.assert_array_equal(label[()], labels)
    assert data[0, :, 0, 0].tolist() == [0, 0, 255]  # BGR.
  assert not (tmp_path / 'p00.mat.tmp').exists()


def test_writer_leaves_nothing_on_failure(tmp_path):
  images, labels = samples()
  with pytest.raises(ValueError, match='expected 4 samples, got 3'):
    matfile.write_release_file(tmp_path / 'p00.mat', [(images, labels)], 4, 6, 5)
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('dtype', [np.uint8, np.float64])
def test_reader_turns_matlab_layout_upright_rgb(tmp_path, dtype):
  images, labels = samples()
  path = write_raw(tmp_path / 'p00.mat', matlab_layout(images).astype(dtype), labels)
  with matfile.ReleaseFile(path) as f:
    assert (f.num_samples, f.height, f.width) == (3, 6, 5)
    np.testing.assert_array_equal(f.labels, labels)
    chunks = list(f.images(chunk_size=2))
  assert [start for start, _ in chunks] == [0, 2]
  decoded = np.concatenate([c for _, c in chunks])
  assert decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, images)
  assert decoded[0, 0, 0].tolist() == [255, 0, 0]


def test_reader_rounds_float_pixels(tmp_path):
  images, labels = samples()
  data = matlab_layout(images).astype(np.float64) + 0.3
  data[data > 255] = 255
  with matfile.ReleaseFile(write_raw(tmp_path / 'p.mat', data, labels)) as f:
    np.testing.assert_array_equal(next(f.images())[1], images)


def _bad_files():
  images, labels = samples()
  good = matlab_layout(images)
  nan_label = labels.copy()
  nan_label[1, 5] = np.nan
  inf_label = labels.copy()
  inf_label[2, 0] = np.inf
  return {
      'missing data': (None, labels, 'Data/data: expected an HDF5 dataset'),
      'missing label': (good, None, 'Data/label: expected an HDF5 dataset'),
      'data not 4-D': (good[:, 0], labels,
                       r'expected h5py shape \(N, 3, W, H\).*found \(3, 5, 6\)'),
      'four channels': (np.concatenate([good, good[:, :1]], 1), labels, r'found \(3, 4, 5, 6\)'),
      'int16 pixels': (good.astype(np.int16), labels, 'expected uint8 or floating-point.*int16'),
      'label width': (good, labels[:, :15], r'expected h5py shape \(N, 16\).*found \(3, 15\)'),
      'count mismatch': (good, labels[:2], 'found 2 rows in Data/label and 3 images'),
      'NaN label': (good, nan_label, 'expected finite labels, found 1 NaN.*sample 1, column 5'),
      'inf label': (good, inf_label, 'found 1 NaN or infinite.*sample 2, column 0'),
  }


@pytest.mark.parametrize('case', sorted(_bad_files()))
def test_bad_layout_is_named(tmp_path, case):
  data, label, message = _bad_files()[case]
  path = write_raw(tmp_path / 'p07.mat', data, label)
  with pytest.raises(matfile.MatFileError, match=message) as err:
    matfile.ReleaseFile(path)
  assert 'p07.mat' in str(err.value)


@pytest.mark.parametrize('bad', [np.nan, -1.0, 256.0])
def test_bad_float_pixels_found_while_streaming(tmp_path, bad):
  images, labels = samples(n=5)
  data = matlab_layout(images).astype(np.float64)
  data[3, 1, 2, 2] = bad
  with matfile.ReleaseFile(write_raw(tmp_path / 'p01.mat', data, labels)) as f:
    with pytest.raises(matfile.MatFileError,
                       match=r'p01\.mat: Data/data: expected pixel values in 0-255, found 1 '
                             r'.*sample 3'):
      list(f.images(chunk_size=2))


def test_not_hdf5_and_truncated(tmp_path):
  text = tmp_path / 'p00.mat'
  text.write_text('not a MATLAB file')
  with pytest.raises(matfile.MatFileError, match=r'p00\.mat: expected a MATLAB v7\.3 \(HDF5\)'):
    matfile.ReleaseFile(text)
  images, labels = samples()
  whole = tmp_path / 'p01.mat'
  matfile.write_release_file(whole, [(images, labels)], 3, 6, 5)
  cut = tmp_path / 'p02.mat'
  cut.write_bytes(whole.read_bytes()[:-100])
  with pytest.raises(matfile.MatFileError, match=r'p02\.mat: .*truncated'):
    matfile.ReleaseFile(cut)
