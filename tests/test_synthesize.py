"""The synthetic release: layout, determinism, label ranges, landmarks on the corners."""
import os

import h5py
import numpy as np
import tensorflow_datasets as tfds

from tfds_mpiifacegaze import matfile
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib
from tfds_mpiifacegaze import synthesize


def test_cli_writes_release_layout(tmp_path):
  synthesize.main(['--out', str(tmp_path), '--persons', '2', '--samples', '3',
                   '--size', '40', '--seed', '5'])
  assert sorted(os.listdir(tmp_path)) == ['p00.mat', 'p01.mat']
  with h5py.File(tmp_path / 'p01.mat', 'r') as f:
    assert f['Data/data'].shape == (3, 3, 40, 40)
    assert f['Data/data'].dtype == np.uint8
    assert f['Data/label'].shape == (3, 16)
  assert (tmp_path / 'p01.mat').read_bytes()[:128] == matfile.MATLAB_HEADER


def test_deterministic_for_a_seed(tmp_path):
  for name, seed in (('a', 3), ('b', 3), ('c', 4)):
    synthesize.write_release(tmp_path / name, persons=2, samples=5, size=32, seed=seed)
  for person in ('p00.mat', 'p01.mat'):
    a, b, c = ((tmp_path / d / person).read_bytes() for d in 'abc')
    assert a == b
    assert a != c


def test_label_ranges_and_spread():
  labels = np.concatenate([lab for p in range(3)
                           for _, lab in synthesize.person_batches(0, p, 200, 32)])
  gaze, head = labels[:, matfile.GAZE], labels[:, matfile.HEAD_POSE]
  for values, (low, high) in ((gaze, synthesize.GAZE_RANGE), (head, synthesize.HEAD_RANGE)):
    assert np.all(values >= low) and np.all(values <= high)
  assert np.all(np.abs(gaze - head) <= synthesize.EYE_ROTATION_MAX)
  assert gaze[:, 1].min() < -0.5 and gaze[:, 1].max() > 0.5
  # Gaze is not head pose: the eyes turn in the head by a good part of the range.
  assert np.std(gaze - head, axis=0).min() > 0.15


def test_rotation_matches_gaze_convention():
  pitch, yaw = np.array([0.3, -0.2]), np.array([-0.5, 0.4])
  forward = synthesize.rotation(pitch, yaw) @ np.array([0.0, 0.0, -1.0])
  expected = np.stack([-np.cos(pitch) * np.sin(yaw), -np.sin(pitch),
                       -np.cos(pitch) * np.cos(yaw)], -1)
  np.testing.assert_allclose(forward, expected, atol=1e-12)


def chroma(pixels):
  pixels = np.asarray(pixels, np.float64)
  return pixels / pixels.sum(-1, keepdims=True)


def corner_probes(landmarks, step):
  """For each landmark pair (eye or mouth), points `step` px inside and outside each
  corner along the line through the pair: (inside, outside) of shape (6, 2)."""
  inside, outside = [], []
  for a, b in landmarks.reshape(3, 2, 2):
    axis = (b - a) / np.linalg.norm(b - a)
    inside += [a + step * axis, b - step * axis]
    outside += [a - step * axis, b + step * axis]
  return np.array(inside), np.array(outside)


def sample_at(image, points, radius):
  """Mean colour of the (2 radius + 1)^2 pixel block around each (x, y) point."""
  out = []
  for x, y in np.rint(points).astype(int):
    out.append(image[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3).mean(0))
  return np.array(out)


def check_rendered_corners(image, landmarks, identity, step, radius):
  """Eye corners border sclera inside and skin outside; mouth corners, lips inside."""
  inside, outside = (sample_at(image, p, radius) for p in corner_probes(landmarks, step))
  inside_c, outside_c = chroma(inside), chroma(outside)
  skin = chroma(identity['skin'])
  # Outside every corner: skin, in RGB order (BGR would swap red and blue).
  np.testing.assert_allclose(outside_c, np.broadcast_to(skin, outside_c.shape), atol=0.03)
  # Inside the eye corners: the near-grey sclera (skin's chromaticity spreads >= 0.09).
  assert np.all(np.ptp(inside_c[:4], axis=1) < 0.06), inside_c
  # Inside the mouth corners: lips, redder than skin.
  assert np.all(inside_c[4:, 0] > skin[0] + 0.04), inside_c


def test_landmarks_are_the_rendered_corners():
  rng = np.random.default_rng(1)
  for person in range(4):
    identity = synthesize.make_identity(np.random.default_rng([0, person]))
    _, head = synthesize.sample_poses(rng, 6)
    # Eyes looking along the head: the iris sits mid-eye, clear of the corners.
    images, landmarks = synthesize.render(identity, head, head, 128, rng)
    assert images.shape == (6, 128, 128, 3) and images.dtype == np.uint8
    for image, marks in zip(images, landmarks):
      check_rendered_corners(image, marks, identity, step=3, radius=1)


def test_built_dataset_keeps_landmarks_on_the_corners(tmp_path):
  """Through the .mat layout and the builder (transpose, BGR, resize, landmark scaling)."""
  rng = np.random.default_rng(2)
  release = tmp_path / 'release'
  release.mkdir()
  identities = []
  for person in range(3):
    identities.append(synthesize.make_identity(np.random.default_rng([0, person])))
    _, head = synthesize.sample_poses(rng, 4)
    images, landmarks = synthesize.render(identities[-1], head, head, 128, rng)
    labels = np.concatenate([head, head, landmarks.reshape(-1, 12)], axis=1)
    matfile.write_release_file(release / matfile.file_name(person), [(images, labels)],
                               4, 128, 128)
  builder = builder_lib.MPIIFaceGaze(config='64', data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(release)))
  for person, identity in enumerate(identities):
    source = builder.as_data_source(split=f'p{person:02d}')
    for i in range(len(source)):
      ex = source[i]
      check_rendered_corners(ex['image'], ex['landmarks'], identity, step=2, radius=0)
