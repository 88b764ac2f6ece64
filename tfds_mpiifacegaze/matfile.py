"""Reading and writing MPIIFaceGaze's normalized `pXX.mat` files (MATLAB v7.3 = HDF5).

The real release stores, per person, a struct `Data` with `Data/data` (MATLAB
[H, W, C, N], BGR) and `Data/label` (MATLAB [16, N]). h5py reverses MATLAB's
column-major axes, so it sees `(N, C, W, H)` and `(N, 16)`: images come out
transposed and BGR, and are turned back to upright RGB (N, H, W, 3) here, in one
place. Files are 1.8 GB, so the reader validates the layout from metadata first
and then streams images in chunks; every error names the file, the dataset and
what was expected versus found.
"""
import os

import h5py
import numpy as np

DATA = 'Data/data'
LABEL = 'Data/label'
# Columns of Data/label: gaze (pitch, yaw) and head pose (pitch, yaw) in radians,
# then six landmarks (x, y) in pixels of the stored image: the eye corners
# (image-left eye outer, inner; image-right eye inner, outer) and the mouth corners
# (image left, image right). Pixel centres are at integer coordinates.
LABEL_WIDTH = 16
GAZE = slice(0, 2)
HEAD_POSE = slice(2, 4)
LANDMARKS = slice(4, 16)
NUM_LANDMARKS = 6

# Largest layout read: declared sizes are checked before anything is allocated, so a
# crafted file cannot make the reader allocate more than a few tens of MB at once (the
# real files have 3000 samples of 448 x 448 px).
MAX_SAMPLES = 100_000
MAX_SIDE = 1024
MAX_CHUNK_BYTES = 64 << 20  # Pixels read at once by `images`.
# Most bytes of pixels per stored (compressed) byte: deflate shrinks photographs of faces
# about 1.5- to 3-fold; only near-constant images, or a crafted file, shrink further.
MAX_EXPANSION = 32

USERBLOCK_SIZE = 512
# MATLAB's 128-byte v7.3 header: 116 bytes of text padded with spaces, a zero
# subsystem offset (8 bytes), version 0x0200 and the endian indicator 'IM'. The
# date is fixed so that files are reproducible byte for byte.
_HEADER_TEXT = (b'MATLAB 7.3 MAT-file, Platform: GLNXA64, '
                b'Created on: Thu Jan  1 00:00:00 2015 HDF5 schema 1.00 .')
MATLAB_HEADER = _HEADER_TEXT.ljust(116) + b'\x00' * 8 + b'\x00\x02IM'


def _num_chunks(data):
  """Chunks a chunked dataset's shape spans."""
  return int(np.prod([-(-n // c) for n, c in zip(data.shape, data.chunks)]))


class MatFileError(ValueError):
  """A `pXX.mat` file that does not have the normalized MPIIFaceGaze layout."""


# What h5py raises on a damaged file's metadata or data, depending on where the damage is.
HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def file_name(person):
  """The file name of person `person`'s data, e.g. p00.mat."""
  return f'p{person:02d}.mat'


class ReleaseFile:
  """One validated `pXX.mat`, open for streaming: `with ReleaseFile(path) as f: ...`.

  Attributes:
    num_samples, height, width: the layout, validated on opening.
    labels: the (N, 16) float64 label matrix, checked to be finite.
  """

  def __init__(self, path):
    self.path = os.fspath(path)
    try:
      self._file = h5py.File(self.path, 'r')
    except OSError as e:
      raise MatFileError(
          f'{self.path}: expected a MATLAB v7.3 (HDF5) file, but h5py cannot open it '
          f'(not HDF5, or truncated): {e}') from e
    try:
      self._read_layout()
    except BaseException as e:
      self._file.close()
      if isinstance(e, HDF5_ERRORS) and not isinstance(e, MatFileError):
        raise MatFileError(f'{self.path}: cannot read its HDF5 structure (corrupt or '
                           f'truncated file): {e}') from e
      raise

  def _read_layout(self):
    """Checks the layout and reads the labels (small), from the open file."""
    self._data = self._dataset(DATA)
    label = self._dataset(LABEL)
    self._check_layout(self._data, label)
    self.labels = label[()]
    bad = ~np.isfinite(self.labels)
    if bad.any():
      row, col = np.argwhere(bad)[0]
      raise MatFileError(
          f'{self.path}: {LABEL}: expected finite labels, found {int(bad.sum())} NaN or '
          f'infinite values (first at sample {row}, column {col})')

  def _dataset(self, name):
    obj = self._file.get(name)
    if not isinstance(obj, h5py.Dataset):
      found = 'nothing' if obj is None else type(obj).__name__
      raise MatFileError(
          f'{self.path}: {name}: expected an HDF5 dataset (MATLAB struct Data with fields '
          f'data and label), found {found}; top-level keys: {sorted(self._file.keys())}')
    return obj

  def _check_layout(self, data, label):
    """Shapes and dtypes from metadata only, before any pixel is read."""
    if data.ndim != 4 or data.shape[1] != 3:
      raise MatFileError(
          f'{self.path}: {DATA}: expected h5py shape (N, 3, W, H) (MATLAB [H, W, 3, N]), '
          f'found {data.shape}')
    if not (data.dtype == np.uint8 or data.dtype.kind == 'f'):
      raise MatFileError(
          f'{self.path}: {DATA}: expected uint8 or floating-point pixels in 0-255, '
          f'found dtype {data.dtype}')
    if label.ndim != 2 or label.shape[1] != LABEL_WIDTH:
      raise MatFileError(
          f'{self.path}: {LABEL}: expected h5py shape (N, {LABEL_WIDTH}) (MATLAB '
          f'[{LABEL_WIDTH}, N]), found {label.shape}')
    if label.dtype.kind != 'f':
      raise MatFileError(
          f'{self.path}: {LABEL}: expected floating-point labels, found dtype {label.dtype}')
    if label.shape[0] != data.shape[0]:
      raise MatFileError(
          f'{self.path}: expected as many labels as images, found {label.shape[0]} rows in '
          f'{LABEL} and {data.shape[0]} images in {DATA}')
    if data.shape[0] == 0:
      raise MatFileError(f'{self.path}: {DATA}: expected at least one sample, found 0')
    if data.shape[0] > MAX_SAMPLES or not all(1 <= side <= MAX_SIDE for side in data.shape[2:]):
      raise MatFileError(
          f'{self.path}: {DATA}: expected at most {MAX_SAMPLES} samples of 1 to {MAX_SIDE} px '
          f'a side, found h5py shape {data.shape}; not reading it')
    self.num_samples, _, self.width, self.height = data.shape
    self._check_storage(data)

  def _check_storage(self, data):
    """Refuses pixels the file does not hold: a declared shape must agree with the bytes
    stored for it and with the file's size, checked from metadata before any pixel is read.

    Unwritten parts of an HDF5 dataset read as fill values, so a small file can declare
    terabytes and keep a reader busy for hours. Uncompressed pixels (MATLAB's and our own
    writer's layout) must all be stored, within the file; compressed ones (MATLAB's chunked
    gzip) must have every chunk stored and expand at most MAX_EXPANSION-fold, well beyond
    what deflate achieves on face images.
    """
    declared = data.size * data.dtype.itemsize
    file_size = os.path.getsize(self.path)
    stored = data.id.get_storage_size()
    compressed = bool(data.compression or data.id.get_create_plist().get_nfilters())
    plist = data.id.get_create_plist()
    problem = None
    if plist.get_external_count() or plist.get_layout() == h5py.h5d.VIRTUAL:
      problem = 'its pixels are kept in other files (external or virtual storage)'
    elif stored > file_size:
      problem = f'its metadata claims {stored} stored bytes, more than the file holds'
    elif data.chunks is not None and data.id.get_num_chunks() < _num_chunks(data):
      problem = (f'only {data.id.get_num_chunks()} of its {_num_chunks(data)} chunks are '
                 'stored (the rest would read as fill values)')
    elif not compressed and stored < declared:
      problem = f'only {stored} bytes are stored (the rest would read as fill values)'
    elif compressed and declared > MAX_EXPANSION * max(stored, 1):
      problem = (f'{stored} compressed bytes would expand {declared / max(stored, 1):.0f}-fold, '
                 f'more than {MAX_EXPANSION}-fold')
    if problem:
      raise MatFileError(
          f'{self.path}: {DATA}: declares h5py shape {data.shape} ({declared} bytes of pixels) '
          f'in a file of {file_size} bytes, but {problem}; expected a release file that holds '
          'its pixels; not reading it')

  def images(self, chunk_size=32):
    """Yields (start, uint8 RGB images (n, H, W, 3)) over the file, n <= chunk_size."""
    sample_bytes = self._data.dtype.itemsize * 3 * self.width * self.height
    chunk_size = max(1, min(chunk_size, MAX_CHUNK_BYTES // sample_bytes))
    for start in range(0, self.num_samples, chunk_size):
      stop = min(start + chunk_size, self.num_samples)
      try:
        chunk = self._data[start:stop]
      except HDF5_ERRORS as e:
        raise MatFileError(
            f'{self.path}: {DATA}: cannot read samples {start}..{stop - 1} '
            f'(truncated or corrupt file): {e}') from e
      if chunk.dtype != np.uint8:
        bad = ~((chunk >= 0) & (chunk <= 255))  # Also catches NaN.
        if bad.any():
          n = np.argwhere(bad)[0][0] + start
          raise MatFileError(
              f'{self.path}: {DATA}: expected pixel values in 0-255, found '
              f'{int(bad.sum())} values outside it or NaN (first in sample {n})')
        chunk = np.rint(chunk).astype(np.uint8)
      # (n, C, W, H) BGR -> (n, H, W, C) RGB.
      yield start, np.ascontiguousarray(chunk.transpose(0, 3, 2, 1)[..., ::-1])

  def close(self):
    """Closes the underlying HDF5 file."""
    self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_release_file(path, batches, num_samples, height, width):
  """Writes one person's file in the real layout, streaming, atomically.

  Args:
    path: destination `pXX.mat`; written as `path + '.tmp'`, renamed when complete.
    batches: iterable of (uint8 RGB images (n, height, width, 3), float (n, 16)
      labels), num_samples rows in all.
    num_samples, height, width: the layout, so that the datasets are created upfront.
  """
  path = os.fspath(path)
  tmp = path + '.tmp'
  try:
    with h5py.File(tmp, 'w', userblock_size=USERBLOCK_SIZE) as f:
      _write_layout(f, batches, num_samples, height, width)
    with open(tmp, 'r+b') as f:
      f.write(MATLAB_HEADER)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _write_layout(f, batches, num_samples, height, width):
  """The struct `Data` with MATLAB's class attributes, filled batch by batch."""
  group = f.create_group('Data')
  group.attrs['MATLAB_class'] = np.bytes_('struct')
  group.attrs.create('MATLAB_fields', [np.frombuffer(b'data', 'S1'),
                                       np.frombuffer(b'label', 'S1')],
                     dtype=h5py.vlen_dtype(np.dtype('S1')))
  data = group.create_dataset('data', (num_samples, 3, width, height), np.uint8,
                              track_times=False)
  data.attrs['MATLAB_class'] = np.bytes_('uint8')
  label = group.create_dataset('label', (num_samples, LABEL_WIDTH), np.float64,
                               track_times=False)
  label.attrs['MATLAB_class'] = np.bytes_('double')
  start = 0
  for images, labels in batches:
    stop = start + len(images)
    # (n, H, W, C) RGB -> (n, C, W, H) BGR: MATLAB [H, W, C, N] as h5py sees it.
    data[start:stop] = images[..., ::-1].transpose(0, 3, 2, 1)
    label[start:stop] = labels
    start = stop
  if start != num_samples:
    raise ValueError(f'{f.filename}: expected {num_samples} samples, got {start}')
