"""ResNet-18 gaze regressor (Flax Linen): face image in [0, 1] -> (pitch, yaw) in radians.

Module names follow torchvision's resnet18 (conv1, bn1, layer1_0, ..., fc) so that
ImageNet weights map one to one; with `fc` producing 2 outputs the parameter count is
torchvision's 11,177,538. The convolution lowering is chosen by `conv_impl` and never
changes the parameters, so checkpoints are interchangeable between lowerings.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gaze_jax.models import lowering

# torchvision's ImageNet normalisation, so imported ImageNet weights see what they expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_SIZES = (2, 2, 2, 2)
STAGE_WIDTHS = (64, 128, 256, 512)


def conv_and_pool(conv_impl):
  """The (Conv module class, max-pool function) pair for a lowering name."""
  if conv_impl == 'xla':
    return nn.Conv, nn.max_pool
  if conv_impl == 'im2col':
    return lowering.Im2ColConv, lowering.max_pool
  raise ValueError(f"model.conv_impl: expected 'xla' or 'im2col', got {conv_impl!r}")


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (torchvision's BasicBlock)."""
  features: int
  strides: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.features, (3, 3), (self.strides, self.strides),
                  padding=((1, 1), (1, 1)), name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(y)
    y = self.norm(name='bn2', scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features, (1, 1), (self.strides, self.strides),
                           padding='VALID', name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(residual + y)


class ResNet18Gaze(nn.Module):
  """ResNet-18 with a Dense(outputs) head: (pitch, yaw) in radians, or class logits.

  stem 'imagenet' is torchvision's (7x7 stride-2 convolution, 3x3 stride-2 max-pool: the
  first stage sees maps 4x smaller than the image); 'cifar' is the 3x3 stride-1 convolution
  without pooling that the official WaNet code's ResNets use for images of 64 px and less
  (16x the compute of 'imagenet' at the same size).
  """
  dtype: Any = jnp.float32
  conv_impl: str = 'im2col'
  bn_axis_name: Any = None  # 'batch' under pmap: BatchNorm statistics over all devices.
  stem: str = 'imagenet'
  outputs: int = 2  # (pitch, yaw); classes (classification); 2 x bins logits (binned).

  @nn.compact
  def __call__(self, x, train: bool = False, features_only: bool = False):
    """(pitch, yaw) of images in [0, 1], NHWC; or the 512-d penultimate features."""
    conv_cls, max_pool = conv_and_pool(self.conv_impl)
    conv = functools.partial(conv_cls, use_bias=False, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, axis_name=self.bn_axis_name)
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    x = x.astype(self.dtype)
    if self.stem == 'imagenet':
      x = conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name='conv1')(x)
      x = nn.relu(norm(name='bn1')(x))
      x = max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = conv(64, (3, 3), padding=((1, 1), (1, 1)), name='conv1')(x)
      x = nn.relu(norm(name='bn1')(x))
    for stage, (blocks, width) in enumerate(zip(STAGE_SIZES, STAGE_WIDTHS)):
      for block in range(blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, strides, conv, norm, name=f'layer{stage + 1}_{block}')(x)
    x = jnp.mean(x, axis=(1, 2))
    if features_only:
      return x.astype(jnp.float32)
    return nn.Dense(self.outputs, dtype=self.dtype, name='fc')(x).astype(jnp.float32)


def from_spec(model, outputs=2, axis_name=None):
  """Builds the ResNet18Gaze of a config.ModelSpec.

  The ResNet18Gaze of a config.ModelSpec with `outputs` outputs; axis_name 'batch' under
  pmap."""
  return ResNet18Gaze(dtype=jnp.dtype(model.dtype), conv_impl=model.conv_impl,
                      bn_axis_name=axis_name, stem=model.stem, outputs=outputs)
