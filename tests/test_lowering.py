"""gaze_jax.lowering computes what nn.Conv / nn.max_pool compute, with interchangeable params.

Tiny shapes (32 px, batch 2-4) keep this fast; the lowering's speed is measured by
benchmarks/bench_train_step.py, not here.
"""
import os
import subprocess
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaze_jax.models import lowering
from gaze_jax.models.resnet import ResNet18Gaze


def assert_trees_close(actual, expected, rtol):
  """Every leaf within rtol of the largest magnitude of its expected leaf."""
  def check(path, a, e):
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    assert a.shape == e.shape, path
    scale = max(1.0, float(np.abs(e).max()))
    err = float(np.abs(a - e).max())
    assert err <= rtol * scale, f'{jax.tree_util.keystr(path)}: {err} > {rtol} * {scale}'
  jax.tree_util.tree_map_with_path(check, actual, expected)


CONV_CASES = [
    # kernel, strides, padding, use_bias
    ((3, 3), 1, ((1, 1), (1, 1)), False),
    ((3, 3), 2, ((1, 1), (1, 1)), False),
    ((1, 1), 2, 'VALID', False),
    ((7, 7), 2, ((3, 3), (3, 3)), False),
    ((3, 3), 1, 'SAME', True),
    ((4, 2), (2, 1), 'SAME', True),
    ((3, 3), 1, 0, False),
]


# conv2d's code paths: XLA's convolutions with XLA's weight gradient (what it does with
# Eigen convolutions) or a chunked weight-gradient loop (with YNNPACK's), im2col + matmul
# (col2im for the input gradient) with a one-chunk weight gradient, and the matmuls-only
# lowering of bfloat16 models (`_MATMUL_DTYPES`), here in float32 so that it must match
# nn.Conv to float32 rounding.
PATHS = {
    'matmuls': dict(_MATMUL_DTYPES=(jnp.float32, jnp.bfloat16), _MATMUL_MIN_CHANNELS=0),
    'xla_conv': dict(_IM2COL_MAX_PIXELS=0, _COL2IM_MAX_PIXELS=0,
                     _ynn_convolutions=lambda: False),
    'xla_conv_chunked_grad': dict(_IM2COL_MAX_PIXELS=0, _COL2IM_MAX_PIXELS=0, _CHUNK_BYTES=1,
                                  _ynn_convolutions=lambda: True),
    'im2col': dict(_IM2COL_MAX_PIXELS=10**9, _COL2IM_MAX_PIXELS=10**9, _CHUNK_BYTES=10**12,
                   _ynn_convolutions=lambda: True),
}


@pytest.fixture(params=sorted(PATHS))
def conv_path(request, monkeypatch):
  for name, value in PATHS[request.param].items():
    monkeypatch.setattr(lowering, name, value)


def check_conv_matches_nn_conv(x, features, kernel, strides, padding, use_bias):
  """Im2ColConv's params, outputs and gradients against nn.Conv's."""
  ref = nn.Conv(features, kernel, strides, padding=padding, use_bias=use_bias)
  ours = lowering.Im2ColConv(features, kernel, strides, padding=padding, use_bias=use_bias)
  variables = ref.init(jax.random.key(1), x)
  # Same names, shapes and initial values from the same key.
  assert_trees_close(ours.init(jax.random.key(1), x), variables, 0.0)
  if use_bias:
    variables = jax.tree.map(lambda p: p + 0.1, variables)  # A nonzero bias.

  def loss(module):
    return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

  assert_trees_close(ours.apply(variables, x), ref.apply(variables, x), 1e-5)
  grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(variables, x)
  assert_trees_close(grads, jax.grad(loss(ref), argnums=(0, 1))(variables, x), 1e-5)


@pytest.mark.usefixtures('conv_path')
@pytest.mark.parametrize('kernel,strides,padding,use_bias', CONV_CASES)
def test_conv_matches_nn_conv(kernel, strides, padding, use_bias):
  x = jax.random.normal(jax.random.key(0), (3, 9, 10, 5))
  check_conv_matches_nn_conv(x, 6, kernel, strides, padding, use_bias)


@pytest.mark.usefixtures('conv_path')
@pytest.mark.parametrize('strides', [1, 2])
def test_conv_matches_nn_conv_on_tiny_maps(strides):
  """Fewer output pixels than filters (ResNet's last stage): the matmul lowering's
  transposed forms of both gradients."""
  x = jax.random.normal(jax.random.key(0), (2, 2, 2, 8))
  check_conv_matches_nn_conv(x, 24, (3, 3), strides, ((1, 1), (1, 1)), False)


@pytest.mark.usefixtures('conv_path')
def test_conv_bfloat16_compute_keeps_float32_params():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  ref = nn.Conv(32, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=jnp.bfloat16)
  ours = lowering.Im2ColConv(32, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                             dtype=jnp.bfloat16)
  variables = ref.init(jax.random.key(1), x)
  y = ours.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  assert_trees_close(y, ref.apply(variables, x), 2e-2)
  grads = jax.grad(lambda v: jnp.sum(ours.apply(v, x).astype(jnp.float32) ** 2))(variables)
  assert grads['params']['kernel'].dtype == jnp.float32
  ref_grads = jax.grad(lambda v: jnp.sum(ref.apply(v, x).astype(jnp.float32) ** 2))(variables)
  assert_trees_close(grads, ref_grads, 3e-2)


def test_conv_rejects_unsupported_padding():
  with pytest.raises(ValueError, match='padding'):
    lowering.Im2ColConv(4, (3, 3), padding='CIRCULAR').init(
        jax.random.key(0), jnp.zeros((1, 5, 5, 2)))


def _max_pool_grad_reference(x, dy, window, strides, pads):
  """NumPy: each output's gradient goes to the first (row-major) maximum of its window."""
  n, h, w, c = x.shape
  xp = np.full((n, h + sum(pads[0]), w + sum(pads[1]), c), -np.inf)
  xp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w] = x
  dxp = np.zeros_like(xp)
  for b, i, j, ch in np.ndindex(*dy.shape):
    patch = xp[b, i * strides[0]:i * strides[0] + window[0],
               j * strides[1]:j * strides[1] + window[1], ch]
    di, dj = np.unravel_index(np.argmax(patch), patch.shape)  # argmax: first maximum.
    dxp[b, i * strides[0] + di, j * strides[1] + dj, ch] += dy[b, i, j, ch]
  return dxp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w]


@pytest.mark.parametrize('window,strides,padding', [
    ((3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet's stem pool.
    ((2, 2), (2, 2), 'VALID'),
    ((3, 2), (1, 2), 'SAME'),
])
def test_max_pool_routes_gradient_to_first_maximum(window, strides, padding):
  # Few distinct values: most windows hold tied maxima.
  x = jax.random.randint(jax.random.key(0), (2, 9, 8, 3), 0, 3).astype(jnp.float32)
  y = lowering.max_pool(x, window, strides, padding)
  np.testing.assert_array_equal(y, nn.max_pool(x, window, strides, padding))
  dy = jax.random.normal(jax.random.key(1), y.shape)
  _, vjp = jax.vjp(lambda x: lowering.max_pool(x, window, strides, padding), x)
  pads = lowering._explicit_padding(padding, x.shape[1:3], window, strides)  # pylint: disable=protected-access
  np.testing.assert_allclose(vjp(dy)[0], _max_pool_grad_reference(
      np.asarray(x), np.asarray(dy), window, strides, pads), rtol=1e-6, atol=1e-6)


def _train_outputs(model, variables, images, labels):
  """Predictions, new batch_stats and the L1-loss gradients w.r.t. params and images."""
  def loss(params, images):
    preds, new_vars = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                                  images, train=True, mutable=['batch_stats'])
    return jnp.mean(jnp.abs(preds - labels)), (preds, new_vars['batch_stats'])
  grads, (preds, stats) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(
      variables['params'], images)
  return preds, stats, grads


def test_resnet_im2col_matches_xla():
  images = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  labels = jax.random.uniform(jax.random.key(1), (4, 2), minval=-0.5, maxval=0.5)
  xla, im2col = ResNet18Gaze(conv_impl='xla'), ResNet18Gaze(conv_impl='im2col')
  variables = jax.jit(xla.init)(jax.random.key(2), images)
  assert_trees_close(jax.jit(im2col.init)(jax.random.key(2), images), variables, 0.0)
  # Nonzero last BatchNorm scales, so every residual branch carries gradient.
  variables = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 0.5 if 'bn2' in jax.tree_util.keystr(p) and 'scale' in
      jax.tree_util.keystr(p) else v, variables)
  preds, stats, grads = _train_outputs(im2col, variables, images, labels)
  ref_preds, ref_stats, ref_grads = _train_outputs(xla, variables, images, labels)
  assert_trees_close(preds, ref_preds, 1e-5)
  assert_trees_close(stats, ref_stats, 1e-5)
  assert_trees_close(grads, ref_grads, 1e-4)
  assert_trees_close(jax.jit(im2col.apply)(variables, images),
                     jax.jit(xla.apply)(variables, images), 1e-5)


def test_checkpoints_load_across_lowerings():
  images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  xla, im2col = ResNet18Gaze(conv_impl='xla'), ResNet18Gaze(conv_impl='im2col')
  for source, target in ((xla, im2col), (im2col, xla)):
    variables = jax.jit(source.init)(jax.random.key(3), images)
    template = jax.jit(target.init)(jax.random.key(4), images)  # Same structure, other values.
    restored = flax.serialization.from_bytes(template, flax.serialization.to_bytes(variables))
    assert_trees_close(restored, variables, 0.0)
    assert_trees_close(target.apply(restored, images), source.apply(variables, images), 1e-5)


def test_use_eigen_convolutions_switches_xla_off_ynnpack():
  code = ('from gaze_jax.models import lowering; lowering.use_eigen_convolutions(); '
          'print(lowering._ynn_convolutions())')  # pylint: disable=protected-access
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       env=env, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=300)
  assert out.stdout.split()[-1] == 'False'
