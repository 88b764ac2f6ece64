"""Import torchvision's ImageNet ResNet-18 weights into the Flax gaze regressor.

The published gaze regressors start from ImageNet weights, which users keep locally as
torchvision's state dict. A `.safetensors` file is read with NumPy alone; a `.pth` file
needs PyTorch, so users without it convert once with `gaze_jax.convert_weights`.

The mapping is derived from the Flax variables themselves (module names follow
torchvision), and it is strict: every backbone tensor must be present with the right
shape, and nothing else may be in the file besides the ImageNet `fc` (dropped, the
2-output head stays freshly initialised) and BatchNorm's `num_batches_tracked`.
"""
import os

import flax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

CONVERT_COMMAND = 'python -m gaze_jax.convert_weights IN.pth OUT.safetensors'

# Flax module name -> torchvision module name, where they differ.
_MODULE_NAMES = {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}
# (collection, Flax leaf) -> torchvision tensor name.
_LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
_HEAD = 'fc'


def _is_ignored(name):
  return name.startswith(_HEAD + '.') or name.endswith('.num_batches_tracked')


def load_torchvision_resnet18(path):
  """Reads a torchvision state dict from `.safetensors` (NumPy) or `.pth` (PyTorch)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Pretrained weights: no such file: {path}')
  suffix = os.path.splitext(path)[1].lower()
  if suffix == '.safetensors':
    try:
      return safetensors.numpy.load_file(path)
    except Exception as e:  # The library raises several unrelated types.
      raise ValueError(f'Pretrained weights: cannot read {path} as safetensors: {e}') from e
  if suffix in ('.pth', '.pt'):
    return _load_pth(path)
  raise ValueError(f'Pretrained weights: {path}: expected a .safetensors or .pth file')


def _load_pth(path):
  """A `.pth` state dict as float32 / integer NumPy arrays; needs PyTorch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'Pretrained weights: reading {path} needs PyTorch, which is not installed. '
        f'Convert it once on a machine with PyTorch: `{CONVERT_COMMAND}`, then pass '
        'the .safetensors file.') from e
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # Pickle, zip and weights_only errors alike.
    raise ValueError(f'Pretrained weights: cannot read {path} with torch.load: {e}') from e
  if not isinstance(state, dict) or not all(
      isinstance(v, torch.Tensor) for v in state.values()):
    raise ValueError(f'Pretrained weights: {path} is not a state dict of tensors '
                     "(torchvision's resnet18 weights are one)")
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state.items()}


def _torch_name(path):
  """torchvision name of a flattened Flax variable path, e.g. layer2.0.downsample.0.weight."""
  collection, *modules, leaf = path
  modules = [_MODULE_NAMES.get(m, m).replace('_', '.') for m in modules]
  try:
    return '.'.join(modules + [_LEAF_NAMES[(collection, leaf)]])
  except KeyError:
    raise ValueError(f'Pretrained weights: no torchvision name for Flax variable '
                     f"{'/'.join(path)}") from None


def _torch_shape(flax_shape, leaf):
  """torchvision's shape of a tensor: conv kernels are OIHW where Flax has HWIO."""
  if leaf == 'kernel':
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(flax_shape)


def torchvision_to_flax(state_dict, variables):
  """Returns `variables` with every backbone tensor taken from torchvision's state dict.

  Args:
    state_dict: torchvision resnet18 tensor name -> array.
    variables: the model's initialised {'params', 'batch_stats', ...}; its `fc` head
      (2 outputs) and any other collection are kept as they are.

  Raises:
    ValueError: naming each missing, unexpected or mis-shaped tensor.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  wanted = {p: _torch_name(p) for p in flat
            if p[0] in ('params', 'batch_stats') and p[1] != _HEAD}
  problems = []
  for path, name in wanted.items():
    if name not in state_dict:
      problems.append(f'missing {name}')
      continue
    expected, found = _torch_shape(flat[path].shape, path[-1]), np.shape(state_dict[name])
    if tuple(found) != expected:
      problems.append(f'{name}: expected shape {expected}, found {tuple(found)}')
  known = set(wanted.values())
  problems += [f'unexpected {name}' for name in sorted(state_dict)
               if name not in known and not _is_ignored(name)]
  if problems:
    raise ValueError('Pretrained weights do not match torchvision resnet18: '
                     + '; '.join(problems))
  for path, name in wanted.items():
    value = np.asarray(state_dict[name])
    if path[-1] == 'kernel':
      value = value.transpose(2, 3, 1, 0)
    flat[path] = jnp.asarray(value, dtype=flat[path].dtype)
  return flax.traverse_util.unflatten_dict(flat)


def init_variables_from(path, variables):
  """`variables` with the backbone loaded from torchvision weights at `path`."""
  return torchvision_to_flax(load_torchvision_resnet18(path), variables)
