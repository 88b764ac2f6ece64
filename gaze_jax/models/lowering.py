"""Convolution and max-pool lowerings that make the ResNet train step fast on XLA:CPU.

They compute what `nn.Conv` / `nn.max_pool` compute (tests/test_lowering.py); only the
operations handed to XLA change. Measured on 2 cores (benchmarks/bench_train_step.py), the
plain Flax ResNet-18 train step is slow on XLA:CPU (jax 0.10) for three reasons:

- XLA hands convolutions to YNNPACK, which ran the 64-channel ones on one of the two cores
  and weight gradients 3-5x slower than Eigen. `use_eigen_convolutions()`, called before JAX
  starts, switches XLA to Eigen's. Where YNNPACK stays, `conv2d` forms weight gradients
  itself: one (F, M) x (M, K) matmul per chunk of images whose patch matrix stays in cache
  (`_CHUNK_BYTES`), 2-3x faster than YNNPACK's. 1x1 convolutions always get one matmul.
- tiny maps: a 3x3 convolution with 512 channels on a 2x2 map takes ~100x longer than
  im2col + one matmul (Eigen and YNNPACK alike), its input gradient too. `conv2d` uses
  im2col + matmul up to `_IM2COL_MAX_PIXELS` output pixels and matmul + col2im for the input
  gradient up to `_COL2IM_MAX_PIXELS`; XLA's convolutions elsewhere.
- the max-pool gradient (`select_and_scatter`): `max_pool`'s custom VJP routes each output
  gradient to the first maximum of its window (PyTorch's rule) in elementwise passes.

bfloat16 (model.dtype) needs more: XLA:CPU computes bfloat16 convolutions in float32 between
converts, and moves bfloat16 data (pads, slices, concatenations) through float32 too; only
its matmuls run in bfloat16, and only in one form (`_dot`). So a bfloat16 convolution
becomes im2col (gathered as 16-bit patterns) + a bfloat16 matmul accumulated in float32,
forward and both gradients (`_matmul_lowering`; XLA's own where that did not pay), with
the float32 kernel cast inside, so that its gradient is never rounded to bfloat16.

`Im2ColConv` is a drop-in for 2-D `flax.linen.Conv` with the same parameter names, shapes
and initialisers, so checkpoints load into either lowering.
"""
import functools
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
_IM2COL_MAX_PIXELS = 9    # Forward: im2col + matmul up to 3x3 output maps.
_COL2IM_MAX_PIXELS = 25   # Input gradient: matmul + col2im up to 5x5 output maps.
_CHUNK_BYTES = 8 * 2**20  # Patch-matrix bytes per chunk of the chunked weight gradient.
# Compute dtypes in which convolutions, and their gradients, are lowered to matmuls: XLA:CPU
# computes a bfloat16 convolution in float32 between converts, while its bfloat16 matmuls
# with float32 accumulation run at about twice the float32 matmul's rate (`_dot`).
_MATMUL_DTYPES = (jnp.bfloat16,)
# Except for convolutions of fewer input channels (the stem's RGB: XLA's were as fast
# forward, 3x faster for the weight gradient) or larger patch matrices (at 224 px, batch 32,
# writing layer1's 115 MB cost more than its bfloat16 matmuls saved; 58 MB broke even and
# 29 MB paid).
_MATMUL_MIN_CHANNELS = 16
_MATMUL_MAX_PATCH_BYTES = 64 * 2**20
# Hands XLA:CPU's convolutions to Eigen instead of YNNPACK (jax 0.10's default), which ran
# the 64-channel convolutions on one of 2 cores and weight gradients 3-5x slower than Eigen.
EIGEN_CONVOLUTIONS_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
Pads = tuple[tuple[int, int], tuple[int, int]]


def use_eigen_convolutions():
  """Adds EIGEN_CONVOLUTIONS_FLAG to XLA_FLAGS on jax 0.10 (the pinned version).

  Other versions are left alone: XLA aborts on a flag it does not know. Takes effect only
  if called before JAX starts its backend (its first computation).
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if jax.__version__.startswith('0.10.') and EIGEN_CONVOLUTIONS_FLAG not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {EIGEN_CONVOLUTIONS_FLAG}'.strip()


@functools.cache
def _ynn_convolutions():
  """Whether XLA hands convolutions to YNNPACK, read off a compiled test convolution."""
  x = jax.ShapeDtypeStruct((1, 8, 8, 32), jnp.float32)
  kernel = jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32)
  conv = jax.jit(lambda x, k: _xla_conv(x, k, (1, 1), ((1, 1), (1, 1))))
  return '__ynn_fusion' in conv.lower(x, kernel).compile().as_text()


def _pairs(value, name) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  value = tuple(value)
  if len(value) != 2:
    raise ValueError(f'{name}: expected an int or 2 ints, got {value!r}')
  return value


def _explicit_padding(padding, in_hw, window, strides) -> Pads:
  """'SAME' / 'VALID' / int / per-dimension ints or (low, high) pairs -> 2 pairs."""
  if isinstance(padding, str):
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f"padding: only 'SAME', 'VALID' or explicit pads, got {padding!r}")
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, window, strides,
                                                       padding.upper()))
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(f'padding: expected 2 spatial dimensions, got {padding!r}')
  return pads


def _out_hw(in_hw, window, strides, pads):
  return tuple((size + lo + hi - k) // s + 1
               for size, k, s, (lo, hi) in zip(in_hw, window, strides, pads))


def _taps(x, window, strides, pads, pad_value=0.0):
  """The window's taps in row-major order: strided views (N, Ho, Wo, C) of padded `x`."""
  ho, wo = _out_hw(x.shape[1:3], window, strides, pads)
  xp = lax.pad(x, jnp.array(pad_value, x.dtype),
               ((0, 0, 0), pads[0] + (0,), pads[1] + (0,), (0, 0, 0)))
  return [lax.slice(xp, (0, i, j, 0),
                    (x.shape[0], i + strides[0] * (ho - 1) + 1,
                     j + strides[1] * (wo - 1) + 1, x.shape[3]),
                    (1, strides[0], strides[1], 1))
          for i in range(window[0]) for j in range(window[1])]


def _untap(tap_grads, x_shape, window, strides, pads):
  """Adjoint of `_taps`: sums per-tap gradients back onto the unpadded input."""
  h, w = x_shape[1:3]
  total = None
  for t, g in enumerate(tap_grads):
    i, j = divmod(t, window[1])
    ho, wo = g.shape[1:3]
    # Tap (i, j) of output (a, b) read input (i - top + stride * a, j - left + stride * b):
    # interior padding spreads the rows and columns, edge padding shifts and crops them.
    rows = (i - pads[0][0], h - (i - pads[0][0]) - strides[0] * (ho - 1) - 1, strides[0] - 1)
    cols = (j - pads[1][0], w - (j - pads[1][0]) - strides[1] * (wo - 1) - 1, strides[1] - 1)
    placed = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), rows, cols, (0, 0, 0)))
    total = placed if total is None else total + placed
  return total


def _moved(fn, x):
  """`fn` (pads, slices, concatenations: data movement only) of `x`; of bfloat16 `x` through
  its 16-bit patterns, as XLA:CPU moves bfloat16 data through float32 and back, which took
  longer than the matmuls that consume it (13 vs 1 ms for a 3x3 im2col at 16x16x64)."""
  if x.dtype != jnp.bfloat16:
    return fn(x)
  return lax.bitcast_convert_type(fn(lax.bitcast_convert_type(x, jnp.uint16)), jnp.bfloat16)


def _patches(x, window, strides, pads):
  """im2col: (N, Ho, Wo, kh * kw * C), patch features ordered (kh, kw, C) like HWIO."""
  def gather(v):  # Zero padding: the bits of 0.0 are 0 in every float format.
    taps = _taps(v, window, strides, pads, 0)
    return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
  return _moved(gather, x)


def _xla_conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _matmul_lowering(x, window, out_hw):
  """Whether the convolution of NHWC `x` with a `window` kernel and `out_hw` output maps is
  lowered to matmuls (`_MATMUL_DTYPES`, `_MATMUL_MIN_CHANNELS`, `_MATMUL_MAX_PATCH_BYTES`)."""
  patch_bytes = (x.shape[0] * out_hw[0] * out_hw[1] * window[0] * window[1] * x.shape[3] *
                 x.dtype.itemsize)
  return (any(x.dtype == d for d in _MATMUL_DTYPES) and x.shape[3] >= _MATMUL_MIN_CHANNELS
          and patch_bytes <= _MATMUL_MAX_PATCH_BYTES)


def _dot(a, b):
  """(..., K) x (K, F) -> (..., F), accumulated and returned in float32.

  This is the one form in which XLA:CPU (jax 0.10) multiplies bfloat16 operands as bfloat16
  (its YNNPACK matmul, on AMX where the CPU has it); with a transposed operand or a bfloat16
  result it converts both operands to float32 first.
  """
  return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)


def _rows_last(x):
  """(N, H, W, C) -> (C, N * H * W), transposed in memory: XLA folds a plain transpose into
  the matmul that consumes it, which then leaves `_dot`'s fast form. (Unlike pads and
  slices, XLA:CPU transposes bfloat16 10x faster than its 16-bit patterns.)"""
  return jnp.transpose(x, (3, 0, 1, 2)).reshape(x.shape[3], -1)


def _kernel_rows(kernel, dtype):
  """HWIO (kh, kw, C, F) -> (F, kh * kw * C) in `dtype`, transposed in memory (see
  `_rows_last`) before the cast: XLA:CPU transposes bfloat16 through float32."""
  return jnp.transpose(kernel, (3, 0, 1, 2)).reshape(kernel.shape[3], -1).astype(dtype)


def _weight_grad(x, dy, window, strides, pads):
  """dL/dkernel (float32) as matmuls, accumulated over chunks of images whose patches stay
  in cache.

  Each chunk adds dy_chunk^T (F, M) x patches_chunk (M, K); the (F, K) sum is float32.
  """
  n, c, f = x.shape[0], x.shape[-1], dy.shape[-1]
  k = window[0] * window[1] * c
  bytes_per_image = dy.shape[1] * dy.shape[2] * k * x.dtype.itemsize
  chunk = max(d for d in range(1, n + 1)
              if n % d == 0 and (d == 1 or d * bytes_per_image <= _CHUNK_BYTES))

  def chunk_grad(start):
    xb = lax.dynamic_slice_in_dim(x, start, chunk)
    dyb = lax.dynamic_slice_in_dim(dy, start, chunk)
    patches = _patches(xb, window, strides, pads).reshape(-1, k)
    return jnp.dot(dyb.reshape(-1, f).T, patches, preferred_element_type=jnp.float32)

  if chunk == n:
    grad = chunk_grad(0)
  else:
    grad = lax.fori_loop(0, n // chunk, lambda i, acc: acc + chunk_grad(i * chunk),
                         jnp.zeros((f, k), jnp.float32))
  return grad.T.reshape(window + (c, f))


def _weight_grad_matmul(patches, dy, kernel_shape):
  """dL/dkernel (float32) as one matmul in dy's dtype, in `_dot`'s fast form.

  dy^T (F, M) x patches (M, K), dy transposed in memory, then the (F, K) product to HWIO;
  with fewer output pixels than filters (tiny maps) patches^T (K, M) x dy (M, F), which
  transposes the patch matrix instead of the larger product.
  """
  f = dy.shape[-1]
  if dy.size // f < f:
    return _dot(_rows_last(patches), dy.reshape(-1, f)).reshape(kernel_shape)
  grad = _dot(_rows_last(dy), patches.reshape(-1, patches.shape[-1]))
  kh, kw, c, _ = kernel_shape
  return jnp.transpose(grad.reshape(f, kh, kw, c), (1, 2, 3, 0))


def _input_grad_matmul(x_shape, kernel, dy, strides, pads):
  """dL/dx (float32) as a matmul in dy's dtype + col2im; `kernel` is the (wider) parameter.

  Each output pixel's patch gradient, dy (M, F) x kernel^T (F, K), is summed back onto the
  input. With fewer output pixels than filters (the last stages' tiny maps) it is computed
  as kernel (K, F) x dy^T (F, M) instead, which transposes dy and the (K, M) product rather
  than the larger kernel. (col2im beat im2col of dy with the flipped kernel at every shape.)
  """
  kh, kw, c, f = kernel.shape
  if dy.shape[0] * dy.shape[1] * dy.shape[2] < f:
    product = _dot(kernel.reshape(-1, f).astype(dy.dtype), _rows_last(dy))  # (K, M)
    dpatches = jnp.transpose(product.reshape((kh * kw, c) + dy.shape[:3]), (2, 3, 4, 0, 1))
  else:
    dpatches = _dot(dy, _kernel_rows(kernel, dy.dtype)).reshape(dy.shape[:3] + (kh * kw, c))
  return _untap([dpatches[..., t, :] for t in range(kh * kw)], x_shape, (kh, kw), strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, kernel, strides, pads):
  """NHWC x HWIO convolution without dilation or groups: `lax.conv_general_dilated`'s value.

  Computed in x.dtype; `kernel` may be wider (float32 parameters of a bfloat16 model): it is
  cast inside, so its gradient is accumulated and returned in its own dtype, unrounded.
  """
  kh, kw, c, f = kernel.shape
  kernel = kernel.astype(x.dtype)
  out_hw = _out_hw(x.shape[1:3], (kh, kw), strides, pads)
  if out_hw[0] * out_hw[1] > _IM2COL_MAX_PIXELS and not _matmul_lowering(x, (kh, kw), out_hw):
    return _xla_conv(x, kernel, strides, pads)
  return _dot(_patches(x, (kh, kw), strides, pads), kernel.reshape(-1, f)).astype(x.dtype)


def _conv2d_fwd(x, kernel, strides, pads):
  return conv2d(x, kernel, strides, pads), (x, kernel)


def _conv2d_bwd(strides, pads, residuals, dy):
  x, kernel = residuals
  kh, kw, c, f = kernel.shape
  compute_kernel = kernel.astype(x.dtype)
  if _matmul_lowering(x, (kh, kw), dy.shape[1:3]):
    dkernel = _weight_grad_matmul(_patches(x, (kh, kw), strides, pads), dy, kernel.shape)
    dx = _input_grad_matmul(x.shape, kernel, dy, strides, pads)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)
  if _ynn_convolutions() or kh * kw == 1:
    dkernel = _weight_grad(x, dy, (kh, kw), strides, pads)
  else:
    _, conv_vjp = jax.vjp(lambda k_: _xla_conv(x, k_, strides, pads), compute_kernel)
    (dkernel,) = conv_vjp(dy)
  if dy.shape[1] * dy.shape[2] > _COL2IM_MAX_PIXELS:
    _, conv_vjp = jax.vjp(lambda x_: _xla_conv(x_, compute_kernel, strides, pads), x)
    (dx,) = conv_vjp(dy)
  else:
    dpatches = jnp.dot(dy.reshape(-1, f), compute_kernel.reshape(-1, f).T)
    dpatches = dpatches.reshape(dy.shape[:3] + (kh * kw, c))
    dx = _untap([dpatches[..., t, :] for t in range(kh * kw)], x.shape, (kh, kw), strides,
                pads)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _materialised(tree):
  """`tree`, computed once and stored: XLA:CPU fuses an elementwise producer into each of
  its consumers, so that one read by the 9 shifted taps of a pool or col2im is recomputed 9
  times. It does not fuse across a conditional; this one's predicate (NaN != NaN) cannot be
  folded at compile time, and both branches return `tree` unchanged (they differ only in
  form, as JAX inlines a conditional whose branches are the same).
  """
  probe = jax.tree.leaves(tree)[0].ravel()[0]
  return lax.cond(probe == probe, lambda t: t,
                  lambda t: jax.tree.map(lambda v: v * jnp.ones((), v.dtype), t), tree)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return functools.reduce(jnp.maximum, _taps(x, window, strides, pads, -jnp.inf))


def _max_pool_fwd(x, window, strides, pads):
  """The max-pool and, per output, the index of the first tap that holds the maximum (-1
  for none: NaNs), computed in one pass."""
  taps = _taps(x, window, strides, pads, -jnp.inf)
  y = functools.reduce(jnp.maximum, taps)
  first = jnp.full(y.shape, -1, jnp.int8)
  for t in reversed(range(len(taps))):
    first = jnp.where(taps[t] == y, jnp.int8(t), first)
  return y, (jnp.zeros(x.shape[:3] + (0,), x.dtype), first)  # x's dtype and size, no data.


def _max_pool_bwd(window, strides, pads, residuals, dy):
  """Each output's gradient to the first maximum of its window, summed in float32.

  dy and the tap indices are materialised first: fused into the sum, XLA recomputed their
  producers (and a chain of tap comparisons) for every tap of every input pixel, 5x the
  time of the rest of the pool's backward pass.
  """
  empty_x, first = residuals
  x_shape = empty_x.shape[:3] + first.shape[3:]
  dy, first = _materialised((dy.astype(jnp.float32), first))
  tap_grads = [jnp.where(first == t, dy, 0.0) for t in range(window[0] * window[1])]
  return (_untap(tap_grads, x_shape, window, strides, pads).astype(empty_x.dtype),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window_shape, strides=None, padding='VALID'):
  """`nn.max_pool` of NHWC `x`; the gradient goes to the first maximum of each window."""
  window = _pairs(window_shape, 'window_shape')
  strides = _pairs(strides or 1, 'strides')
  return _max_pool(x, window, strides,
                   _explicit_padding(padding, x.shape[1:3], window, strides))


class Im2ColConv(nn.Module):
  """`flax.linen.Conv` for 2-D NHWC input, computed by `conv2d`.

  The fields, parameter names, shapes and initialisers are `nn.Conv`'s (less dilation,
  feature groups, masks and precision), so a params tree of one loads into the other.
  """
  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Any = 'SAME'
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, inputs):
    if inputs.ndim != 4:
      raise ValueError(f'Im2ColConv: expected NHWC input, got shape {inputs.shape}')
    window = _pairs(tuple(self.kernel_size), 'kernel_size')  # An int would mean 1-D.
    strides = _pairs(self.strides, 'strides')
    pads = _explicit_padding(self.padding, inputs.shape[1:3], window, strides)
    kernel = self.param('kernel', self.kernel_init, window + (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    # As nn.Conv: computed in self.dtype, else the inputs' and parameters' promoted dtype.
    # The kernel is cast inside conv2d, so that its gradient stays in its own dtype.
    dtype = nn.dtypes.canonicalize_dtype(inputs, kernel, bias, dtype=self.dtype)
    inputs = inputs.astype(dtype)
    y = conv2d(inputs, kernel, strides, pads)
    return y if bias is None else y + bias.astype(dtype)
