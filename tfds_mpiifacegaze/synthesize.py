"""Synthetic MPIIFaceGaze release: procedural faces written in the real `pXX.mat` layout.

    python -m tfds_mpiifacegaze.synthesize --out DIR --persons 15 --samples 3000 \
        --size 448 --seed 0

Each person has an identity (skin tone, face shape, eye spacing and size, iris colour,
hair, background texture); each sample a head pose and a gaze direction in the real
data's ranges. A face is a rigid 3-D head (an ellipsoid carrying eye, brow, nose and
mouth points) rotated by the head pose and projected orthographically; each eyeball
is a sphere behind its eye opening whose iris and pupil sit where the gaze direction
puts them, seen through eyelids that follow the vertical gaze. Gaze is thus readable
from where the irises sit between the eye corners, once the head pose is read from the
face. The six landmarks in the label are the projected eye and mouth corners, i.e.
the true corners of the rendered shapes. Lighting gradients, sensor noise and blur
vary per sample. `texture` > 0 adds fine detail at pixel scale (skin grain and hair
strands that move with the head, lashes, stronger sensor noise): a warp trigger changes
little on flat shading, so how much texture the faces carry is a factor of the study.
Shapes are drawn anti-aliased from signed distances, vectorized over a batch; features
only within windows around them. Output depends only on the arguments; files are written a
person at a time.
"""
import argparse
import os

import numpy as np
from scipy import ndimage

from tfds_mpiifacegaze import matfile

RENDER_VERSION = 'v2'  # Part of cached releases' names: bump when the output changes.
# Label ranges in radians, (pitch, yaw); positive pitch looks up, positive yaw
# looks towards the image left (the MPIIFaceGaze convention, gaze_jax.gaze).
GAZE_RANGE = ((-0.6, -0.6), (0.3, 0.6))
HEAD_RANGE = ((-0.3, -0.3), (0.15, 0.3))
EYE_ROTATION_MAX = (0.45, 0.6)  # Largest |gaze - head| per angle: eyes turn so far.
# Eye model: eyeball and iris radii relative to the eye opening's half width and to
# the eyeball; how far the upper and lower lids open per unit sin(vertical gaze
# relative to the head).
EYEBALL_RADIUS = 1 / 1.2
IRIS_RADIUS = 0.5
LID_FOLLOW = (1.0, 0.5)
BATCH_PIXELS = 2 ** 21  # Samples rendered at once: this many pixels (~25 MB a layer).
GRAIN_CELLS = 96  # Skin grain and hair strands: cells across the head, about a pixel at 64 px.


def rotation(pitch, yaw):
  """The head rotation matrices of (pitch, yaw) head poses.

  (..., 3, 3) head rotation taking the forward axis (0, 0, -1) to the pose's
  gaze_jax.gaze.pitchyaw_to_vector direction. Axes: x right, y down, z away from
  the camera."""
  cp, sp, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
  zero, one = np.zeros_like(pitch), np.ones_like(pitch)
  rx = np.stack([np.stack([one, zero, zero], -1),      # Rotation about x by -pitch.
                 np.stack([zero, cp, sp], -1),
                 np.stack([zero, -sp, cp], -1)], -2)
  ry = np.stack([np.stack([cy, zero, sy], -1),         # Rotation about y by yaw.
                 np.stack([zero, one, zero], -1),
                 np.stack([-sy, zero, cy], -1)], -2)
  return ry @ rx


def make_identity(rng):
  """A person's appearance and face geometry (lengths in half image widths)."""
  tone = rng.uniform()
  skin = (1 - tone) * np.array([0.96, 0.80, 0.68]) + tone * np.array([0.46, 0.30, 0.21])
  eye_half = rng.uniform(0.252, 0.28)
  return dict(
      skin=skin * rng.uniform(0.96, 1.04, 3),
      lips=skin * np.array([0.80, 0.50, 0.52]),
      iris=rng.choice([[0.40, 0.24, 0.10], [0.28, 0.45, 0.70], [0.30, 0.48, 0.30],
                       [0.45, 0.45, 0.48]]) * rng.uniform(0.7, 1.1),
      sclera=np.array([0.95, 0.93, 0.90]) * rng.uniform(0.93, 1.0),
      hair=rng.uniform(0.04, 0.35) * rng.uniform(0.6, 1.0, 3),
      background=rng.uniform(0.15, 0.9, (2, 3)),
      texture_freq=rng.uniform(1.0, 5.0, (3, 2)) * rng.choice([-1, 1], (3, 2)),
      texture_phase=rng.uniform(0, 2 * np.pi, 3),
      head_axes=np.array([rng.uniform(0.836, 0.902), rng.uniform(0.954, 1.028), 0.6]),
      eye_x=rng.uniform(0.36, 0.40),
      eye_y=rng.uniform(-0.14, -0.08),
      eye_half=eye_half,
      lid_upper=eye_half * rng.uniform(0.44, 0.54),
      lid_lower=eye_half * rng.uniform(0.30, 0.38),
      brow_gap=rng.uniform(0.15, 0.2),
      mouth_y=rng.uniform(0.42, 0.5),
      mouth_half=rng.uniform(0.17, 0.23),
      nose_y=rng.uniform(0.17, 0.24),
  )


def sample_poses(rng, n):
  """(n, 2) gaze and (n, 2) head pose, uniform in range with the eyes within reach."""
  gaze, head = np.empty((n, 2)), np.empty((n, 2))
  todo = np.arange(n)
  while todo.size:
    g = rng.uniform(*GAZE_RANGE, (todo.size, 2))
    h = rng.uniform(*HEAD_RANGE, (todo.size, 2))
    ok = np.all(np.abs(g - h) <= EYE_ROTATION_MAX, axis=1)
    gaze[todo[ok]], head[todo[ok]] = g[ok], h[ok]
    todo = todo[~ok]
  return gaze, head


def _surface_z(identity, x, y):
  """Depth (towards the camera is negative) of the head ellipsoid's front at x, y."""
  ax, ay, az = (float(a) for a in identity['head_axes'])
  return -az * np.sqrt(np.maximum(1 - (x / ax) ** 2 - (y / ay) ** 2, 0.05))


def _on_face(identity, x, y, dz=0.0):
  """Head-frame point on the face at x, y, dz in front of (negative) or behind it."""
  return np.array([x, y, _surface_z(identity, x, y) + dz])


def _coverage(sd, px):
  """Anti-aliased coverage from a signed distance (inside < 0), px = pixel size."""
  return np.clip(0.5 - sd / px, 0.0, 1.0)


def _ellipse_sd(x, y, a, b):
  """Approximate signed distance to the ellipse (x/a)^2 + (y/b)^2 = 1 (exact at it)."""
  f = np.sqrt((x / a) ** 2 + (y / b) ** 2)
  g = np.sqrt((x / a ** 2) ** 2 + (y / b ** 2) ** 2)
  return (f - 1) * np.clip(f / np.maximum(g, 1e-12), np.minimum(a, b), np.maximum(a, b))


def _almond_sd(u, v, half, upper, lower):
  """Signed distance to an eye/mouth opening in its own frame (u along the corners
  at u = +-half, v down): between two parabolic lids of heights upper and lower.
  Also returns the upper lid's own signed distance (for the lash line)."""
  t2 = (u / half) ** 2
  up = (-upper * (1 - t2) - v) / np.sqrt(1 + (2 * upper * u / half ** 2) ** 2)
  low = (v - lower * (1 - t2)) / np.sqrt(1 + (2 * lower * u / half ** 2) ** 2)
  return np.maximum(up, low), up


def _col(c):
  """A colour (3,) broadcast against images (n, h, w, 3)."""
  return np.asarray(c, np.float32)[None, None, None]


def _bc(a):
  """Per-sample values (n,) broadcast against pixel maps (n, h, w)."""
  return np.asarray(a, np.float32)[:, None, None]


def _paint(image, alpha, colour):
  """image (n, h, w, 3) += alpha (n, h, w) * (colour - image), in place."""
  delta = np.subtract(colour, image, dtype=np.float32)
  delta *= alpha[..., None]
  image += delta


def _frame(x, y, a, b):
  """(u, v, half): pixels x, y in the frame centred between a and b (n, 2), u towards
  b, v 90 degrees clockwise (down when b is right of a); half = |b - a| / 2."""
  a, b = a.astype(np.float32), b.astype(np.float32)
  axis = b - a
  half = np.linalg.norm(axis, axis=-1) / 2
  e = axis / (2 * half[:, None])
  dx, dy = x - ((a + b) / 2)[:, 0, None, None], y - ((a + b) / 2)[:, 1, None, None]
  ex, ey = e[:, 0, None, None], e[:, 1, None, None]
  return dx * ex + dy * ey, -dx * ey + dy * ex, half[:, None, None]


class _Windows:
  """Per-sample square pixel windows, so that small features cost small arrays."""

  def __init__(self, size, centres, half):
    self.w = min(size, int(np.ceil(half * size)) + 2)
    pix = (centres + 1) * size / 2 - 0.5
    self.origin = np.clip(np.rint(pix - self.w / 2).astype(int), 0, size - self.w)
    span = np.arange(self.w)
    coords = ((self.origin[..., None] + span + 0.5) * 2 / size - 1).astype(np.float32)
    self.x, self.y = coords[:, 0, None, :], coords[:, 1, :, None]

  def crop(self, image):
    return np.stack([im[oy:oy + self.w, ox:ox + self.w]
                     for im, (ox, oy) in zip(image, self.origin)])

  def paste(self, image, crop):
    for im, c, (ox, oy) in zip(image, crop, self.origin):
      im[oy:oy + self.w, ox:ox + self.w] = c


def _grain(identity_rng):
  """A person's fine texture: (GRAIN_CELLS, GRAIN_CELLS) zero-mean unit-variance noise,
  and the same stretched along y (hair strands)."""
  cells = identity_rng.standard_normal((GRAIN_CELLS, GRAIN_CELLS)).astype(np.float32)
  strands = ndimage.gaussian_filter(cells, (3.0, 0.4), mode='wrap')
  return cells, strands / strands.std()


def _sample(field, u, v):
  """Bilinear samples of a periodic field at face coordinates u, v in [-1, 1]."""
  n = field.shape[0]
  rows, cols = np.broadcast_arrays((v + 1) * n / 2, (u + 1) * n / 2)
  return ndimage.map_coordinates(field, [rows.ravel(), cols.ravel()], order=1,
                                 mode='grid-wrap').reshape(rows.shape)


def render(identity, gaze, head, size, rng, texture=0.0):
  """Renders faces of one identity.

  Args:
    identity: from make_identity.
    gaze, head: (n, 2) pitch, yaw in radians.
    size: image side in pixels.
    rng: np.random.Generator for the per-sample nuisances (shift, pupil size, light,
      blur, noise).
    texture: strength of the fine detail (0: none, the v2 faces exactly; 1: skin grain
      of +-12%, hair strands of +-30%, lashes, sensor noise 3x).

  Returns:
    uint8 RGB images (n, size, size, 3), upright, and (n, 6, 2) landmarks (x, y) in
    pixels (pixel centres at integers), in matfile's landmark order.
  """
  n = len(gaze)
  px = 2.0 / size
  rot = rotation(head[:, 0], head[:, 1]).astype(np.float32)
  centre = rng.uniform(-0.01, 0.01, (n, 2)) + [0.0, 0.04]

  def project(points):  # (k, 3) head-frame points -> (n, k, 2) image coordinates.
    return np.einsum('nij,kj->nki', rot, points)[..., :2] + centre[:, None]

  lin = (np.arange(size, dtype=np.float32) + 0.5) * px - 1
  x, y = lin[None, None, :], lin[None, :, None]

  # Background: a per-person texture of three plane waves between two colours.
  f = identity['texture_freq'].astype(np.float32) * np.pi
  phase = identity['texture_phase'].astype(np.float32)
  wave = sum(np.sin(f[k, 0] * x + f[k, 1] * y + phase[k]) for k in range(3))
  bg0, bg1 = identity['background']
  image = np.empty((n, size, size, 3), np.float32)
  image[:] = (0.5 + wave / 6)[..., None] * _col(bg1 - bg0) + _col(bg0)

  # Head: hair (a slightly larger ellipse), then the skin below a hairline that moves
  # with the head, shaded brighter where the face points at the camera.
  ax, ay, az = (float(a) for a in identity['head_axes'])
  cx, cy = _bc(centre[:, 0]), _bc(centre[:, 1])
  sx = _bc(np.sqrt((ax * np.cos(head[:, 1])) ** 2 + (az * np.sin(head[:, 1])) ** 2))
  sy = _bc(np.sqrt((ay * np.cos(head[:, 0])) ** 2 + (az * np.sin(head[:, 0])) ** 2))
  hair_colour = _col(identity['hair'])
  if texture:  # Grain and strands in face coordinates: they move with the head.
    u, v = (x - cx) / (sx * 1.06), (y - cy) / (sy * 1.06)
    hair_colour = hair_colour * (1 + 0.3 * texture * _sample(identity['grain'][1], u, v))[
        ..., None]
  _paint(image, _coverage(_ellipse_sd(x - cx, y - cy, sx * 1.06, sy * 1.06), px), hair_colour)
  hairline = project(np.array([_on_face(identity, 0.0, -0.56)]))[:, 0]
  hair_sd = _bc(hairline[:, 1]) + 0.5 * (x - _bc(hairline[:, 0])) ** 2 - y
  skin = np.maximum(_ellipse_sd(x - cx, y - cy, sx, sy), hair_sd)
  front = project(np.array([[0.0, 0.0, -az]]))[:, 0]
  fx, fy = x - _bc(front[:, 0]), y - _bc(front[:, 1])
  shade = 0.72 + 0.28 * np.sqrt(np.clip(1 - (fx / ax) ** 2 - (fy / ay) ** 2, 0, 1))
  if texture:
    shade = shade * (1 + 0.12 * texture * _sample(identity['grain'][0], (x - cx) / sx,
                                                   (y - cy) / sy))
  _paint(image, _coverage(skin, px), _col(identity['skin']) * shade[..., None])

  # Eyes and brows, one window each.
  ex, ey, eh = identity['eye_x'], identity['eye_y'], identity['eye_half']
  corners3d = np.array([_on_face(identity, x0, ey) for x0 in
                        (-ex - eh, -ex + eh, ex - eh, ex + eh)])
  corners = project(corners3d)
  radius = EYEBALL_RADIUS * eh
  gvec = np.stack([-np.cos(gaze[:, 0]) * np.sin(gaze[:, 1]), -np.sin(gaze[:, 0]),
                   -np.cos(gaze[:, 0]) * np.cos(gaze[:, 1])], -1)
  look_up = np.sin(gaze[:, 0] - head[:, 0])    # Eyelids follow the vertical gaze.
  upper = _bc(identity['lid_upper'] * np.cos(head[:, 0]) * (1 + LID_FOLLOW[0] * look_up))
  lower = _bc(identity['lid_lower'] * np.cos(head[:, 0]) * (1 - LID_FOLLOW[1] * look_up))
  iris_radius = IRIS_RADIUS * radius
  pupil = _bc(rng.uniform(0.36, 0.48, n) * iris_radius)
  for side in (0, 1):
    a3, b3 = corners3d[2 * side], corners3d[2 * side + 1]
    ball = project(np.array([(a3 + b3) / 2 + [0, 0, 0.85 * radius]]))[:, 0]
    iris = ball + radius * gvec[:, :2]
    win = _Windows(size, (corners[:, 2 * side] + corners[:, 2 * side + 1]) / 2
                   + [0, -identity['brow_gap'] / 2], 1.4 * eh)
    crop = win.crop(image)
    # Brow: an arched band parallel to the eye, at a point higher up the face.
    brow_a = project(np.array([_on_face(identity, a3[0], ey - identity['brow_gap'])]))[:, 0]
    brow_b = project(np.array([_on_face(identity, b3[0], ey - identity['brow_gap'])]))[:, 0]
    u, v, half = _frame(win.x, win.y, brow_a, brow_b)
    arch = v + 0.05 * (1 - (u / half) ** 2)
    _paint(crop, _coverage(np.maximum(np.abs(arch) - 0.022, np.abs(u) - 1.05 * half), px),
           _col(identity['hair']))
    # Opening: sclera darkening towards the corners, then iris (a disk facing the
    # gaze, so foreshortened along it) with a darker limbus, then the pupil.
    u, v, half = _frame(win.x, win.y, corners[:, 2 * side], corners[:, 2 * side + 1])
    opening, upper_sd = _almond_sd(u, v, half, upper, lower)
    inside = _coverage(opening, px)
    sclera = _col(identity['sclera']) * (0.8 + 0.2 * (1 - (u / half) ** 2))[..., None]
    _paint(crop, inside, sclera)
    dx, dy = win.x - _bc(iris[:, 0]), win.y - _bc(iris[:, 1])
    norm = np.maximum(np.linalg.norm(gvec[:, :2], axis=-1), 1e-6)
    d0, d1 = _bc(gvec[:, 0] / norm), _bc(gvec[:, 1] / norm)
    along, across = (dx * d0 + dy * d1) / _bc(-gvec[:, 2]), -dx * d1 + dy * d0
    rho = np.sqrt(along ** 2 + across ** 2)
    limbus = (0.6 + 0.4 * np.clip(1 - rho / iris_radius, 0, 1))[..., None]
    _paint(crop, inside * _coverage(rho - iris_radius, px), _col(identity['iris']) * limbus)
    _paint(crop, inside * _coverage(rho - pupil, px), _col([0.03, 0.03, 0.03]))
    # Upper-lid lash line just above the opening.
    lash = np.maximum(np.abs(upper_sd - 0.012) - 0.012, np.abs(u) - half)
    _paint(crop, _coverage(lash, px), _col([0.08, 0.06, 0.05]))
    if texture:  # Lashes: thin dark strokes rising from the lash line.
      strokes = np.abs(np.sin(u / half * 11 * np.pi)) - 0.25
      rising = np.maximum(np.abs(upper_sd - 0.04) - 0.028, np.abs(u) - 0.9 * half)
      _paint(crop, texture * _coverage(np.maximum(rising, strokes * 0.02), px),
             _col([0.05, 0.04, 0.03]))
    win.paste(image, crop)

  # Nose (nostrils standing out from the face) and mouth, in one window.
  mouth3d = np.array([_on_face(identity, s * identity['mouth_half'], identity['mouth_y'])
                      for s in (-1, 1)])
  mouth = project(mouth3d)
  nose = project(np.array([_on_face(identity, s * 0.065, identity['nose_y'], -0.09)
                           for s in (-1, 1)]))
  win = _Windows(size, (mouth[:, 0] + mouth[:, 1] + nose[:, 0] + nose[:, 1]) / 4,
                 identity['mouth_half'] + 0.06)
  crop = win.crop(image)
  for k in (0, 1):
    nostril = _ellipse_sd(win.x - _bc(nose[:, k, 0]), win.y - _bc(nose[:, k, 1]), 0.035, 0.02)
    _paint(crop, 0.8 * _coverage(nostril, px), _col(identity['skin'] * 0.35))
  u, v, half = _frame(win.x, win.y, mouth[:, 0], mouth[:, 1])
  lips, _ = _almond_sd(u, v, half, 0.055, 0.07)
  _paint(crop, _coverage(lips, px), _col(identity['lips']))
  _paint(crop, _coverage(np.maximum(np.abs(v) - 0.007, np.abs(u) - half), px),
         _col(identity['lips'] * 0.4))
  win.paste(image, crop)

  # Camera: lighting gradient and gain, blur, sensor noise.
  angle = rng.uniform(0, 2 * np.pi, n)
  slope = rng.uniform(0, 0.1, n)
  gain = _bc(rng.uniform(0.95, 1.05, n)) * (
      1 + _bc(slope * np.cos(angle)) * x + _bc(slope * np.sin(angle)) * y)
  image *= gain[..., None]
  for im, sigma in zip(image, rng.uniform(0, 0.003, n) * size):
    ndimage.gaussian_filter(im, (sigma, sigma, 0), output=im, truncate=3.0)
  noise = rng.random(image.shape, np.float32)  # Uniform: as good here, 5x cheaper.
  noise -= 0.5
  noise *= _bc(rng.uniform(0.015, 0.055, n) * (1 + 2 * texture))[..., None]  # Std 1-4 levels.
  image += noise
  image *= 255
  image = np.clip(np.rint(image, out=image), 0, 255, out=image).astype(np.uint8)
  landmarks = np.concatenate([corners, mouth], axis=1)
  return image, (landmarks + 1) * size / 2 - 0.5


def person_batches(seed, person, num_samples, size, texture=0.0):
  """Yields (images, (n, 16) labels) for one person, deterministic given the args."""
  rng = np.random.default_rng([seed, person])
  identity = make_identity(rng)
  gaze, head = sample_poses(rng, num_samples)
  if texture:  # Drawn after the poses, so the faces without texture stay as they were.
    identity['grain'] = _grain(rng)
  batch = max(1, BATCH_PIXELS // size ** 2)
  for start in range(0, num_samples, batch):
    sl = slice(start, start + batch)
    images, landmarks = render(identity, gaze[sl], head[sl], size,
                               np.random.default_rng([seed, person, start]), texture)
    yield images, np.concatenate([gaze[sl], head[sl], landmarks.reshape(-1, 12)], axis=1)


def write_release(out_dir, persons=15, samples=3000, size=448, seed=0, texture=0.0):
  """Writes p00.mat ... into out_dir, a person at a time."""
  os.makedirs(out_dir, exist_ok=True)
  for person in range(persons):
    matfile.write_release_file(os.path.join(out_dir, matfile.file_name(person)),
                               person_batches(seed, person, samples, size, texture),
                               samples, size, size)


def main(argv=None):
  """Writes the synthetic release the command line asks for."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='Directory for p00.mat ...')
  parser.add_argument('--persons', type=int, default=15)
  parser.add_argument('--samples', type=int, default=3000, help='Samples per person.')
  parser.add_argument('--size', type=int, default=448, help='Image side in pixels.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--texture', type=float, default=0.0,
                      help='Fine detail at pixel scale: 0 none, 1 full (skin, hair, lashes).')
  args = parser.parse_args(argv)
  write_release(args.out, args.persons, args.samples, args.size, args.seed, args.texture)


if __name__ == '__main__':
  main()
