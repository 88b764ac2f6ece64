"""The ResNet-18 regressor's shape and size equal torchvision's resnet18 with fc = Linear(512, 2)."""
import jax
import jax.numpy as jnp
import numpy as np

from gaze_jax.models.resnet import ResNet18Gaze

# torchvision resnet18: 11,689,512 parameters with the 1000-way fc (512*1000 + 1000);
# replacing it by Linear(512, 2) gives 11,689,512 - 513,000 + 1,026.
TORCHVISION_RESNET18 = 11_689_512
TORCHVISION_GAZE = TORCHVISION_RESNET18 - (512 * 1000 + 1000) + (512 * 2 + 2)


def test_parameter_count_equals_torchvision():
  variables = jax.eval_shape(ResNet18Gaze().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))
  assert count == TORCHVISION_GAZE == 11_177_538


def test_outputs_pitch_yaw_and_bfloat16_keeps_float32_params():
  model = ResNet18Gaze(dtype=jnp.bfloat16)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  out = jax.jit(model.apply)(variables, jnp.full((3, 32, 32, 3), 0.5))
  assert out.shape == (3, 2) and out.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables['params']))
