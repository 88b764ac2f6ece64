"""Importing torchvision ResNet-18 weights: name/shape mapping and feature equality.

The equality test builds a PyTorch ResNet-18 with torchvision's parameter names (written
here, so torchvision itself is not needed) and runs only where PyTorch is installed;
everything else checks the mapping on synthetic NumPy state dicts.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from gaze_jax import convert_weights
from gaze_jax.models import resnet
from gaze_jax.models import torchvision

IMAGE = 32  # 32 px reaches 1x1 at layer4, the smallest input the network takes whole.
WIDTHS = (64, 128, 256, 512)


def torchvision_shapes():
  """torchvision resnet18's state dict names and shapes, ImageNet head included."""
  shapes = {'conv1.weight': (64, 3, 7, 7), 'fc.weight': (1000, 512), 'fc.bias': (1000,)}

  def bn(name, c):
    shapes.update({f'{name}.weight': (c,), f'{name}.bias': (c,), f'{name}.running_mean': (c,),
                   f'{name}.running_var': (c,), f'{name}.num_batches_tracked': ()})

  bn('bn1', 64)
  cin = 64
  for stage, c in enumerate(WIDTHS, 1):
    for block in range(2):
      p = f'layer{stage}.{block}'
      shapes[f'{p}.conv1.weight'] = (c, cin, 3, 3)
      bn(f'{p}.bn1', c)
      shapes[f'{p}.conv2.weight'] = (c, c, 3, 3)
      bn(f'{p}.bn2', c)
      if cin != c:
        shapes[f'{p}.downsample.0.weight'] = (c, cin, 1, 1)
        bn(f'{p}.downsample.1', c)
      cin = c
  return shapes


def random_state_dict(seed=0):
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in torchvision_shapes().items():
    if name.endswith('num_batches_tracked'):
      state[name] = np.array(7, np.int64)
    elif name.endswith('running_var'):
      state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    else:
      state[name] = rng.normal(size=shape).astype(np.float32)
  return state


@pytest.fixture(scope='module')
def variables():
  return resnet.ResNet18Gaze(conv_impl='xla').init(
      jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))


def test_mapping_transposes_and_keeps_head(variables):
  state = random_state_dict()
  out = torchvision.torchvision_to_flax(state, variables)
  np.testing.assert_array_equal(out['params']['conv1']['kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  ds = out['params']['layer3_0']['downsample_conv']['kernel']
  assert ds.shape == (1, 1, 128, 256)
  np.testing.assert_array_equal(ds[0, 0], state['layer3.0.downsample.0.weight'][:, :, 0, 0].T)
  np.testing.assert_array_equal(out['params']['layer4_1']['bn2']['scale'],
                                state['layer4.1.bn2.weight'])
  np.testing.assert_array_equal(out['params']['layer2_0']['downsample_bn']['bias'],
                                state['layer2.0.downsample.1.bias'])
  np.testing.assert_array_equal(out['batch_stats']['bn1']['mean'], state['bn1.running_mean'])
  np.testing.assert_array_equal(out['batch_stats']['layer1_1']['bn1']['var'],
                                state['layer1.1.bn1.running_var'])
  for leaf in ('kernel', 'bias'):  # The ImageNet fc is dropped, the 2-output head kept.
    np.testing.assert_array_equal(out['params']['fc'][leaf], variables['params']['fc'][leaf])
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
  assert shapes(out) == shapes(variables)


@pytest.mark.parametrize('edit, message', [
    (lambda s: s.pop('layer3.1.bn2.running_var'), 'missing layer3.1.bn2.running_var'),
    (lambda s: s.update({'layer5.0.conv1.weight': np.zeros((1,))}),
     'unexpected layer5.0.conv1.weight'),
    (lambda s: s.update({'layer2.0.downsample.0.weight': np.zeros((128, 64, 3, 3))}),
     'layer2.0.downsample.0.weight: expected shape (128, 64, 1, 1), found (128, 64, 3, 3)'),
])
def test_mapping_rejects_mismatch(variables, edit, message):
  state = random_state_dict()
  edit(state)
  with pytest.raises(ValueError) as e:
    torchvision.torchvision_to_flax(state, variables)
  assert message in str(e.value)


def test_safetensors_file_round_trip(variables, tmp_path):
  state = random_state_dict()
  path = str(tmp_path / 'resnet18.safetensors')
  safetensors.numpy.save_file(state, path)
  out = torchvision.init_variables_from(path, variables)
  np.testing.assert_array_equal(out['params']['layer1_0']['conv2']['kernel'],
                                state['layer1.0.conv2.weight'].transpose(2, 3, 1, 0))


def test_unreadable_files_name_the_path(tmp_path):
  missing = str(tmp_path / 'nope.safetensors')
  with pytest.raises(FileNotFoundError, match='nope.safetensors'):
    torchvision.load_torchvision_resnet18(missing)
  garbage = tmp_path / 'garbage.safetensors'
  garbage.write_bytes(b'not a safetensors file')
  with pytest.raises(ValueError, match='garbage.safetensors'):
    torchvision.load_torchvision_resnet18(str(garbage))
  other = tmp_path / 'weights.npz'
  other.write_bytes(b'')
  with pytest.raises(ValueError, match=r'weights.npz.*\.safetensors or \.pth'):
    torchvision.load_torchvision_resnet18(str(other))


def test_pth_without_torch_explains_conversion(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # Makes `import torch` fail.
  path = tmp_path / 'resnet18.pth'
  path.write_bytes(b'')
  with pytest.raises(ImportError, match='gaze_jax.convert_weights') as e:
    torchvision.load_torchvision_resnet18(str(path))
  assert 'resnet18.pth' in str(e.value)


def test_convert_reports_bad_input(tmp_path):
  with pytest.raises(SystemExit, match='convert_weights: .*nope.pth'):
    convert_weights.main([str(tmp_path / 'nope.pth'), str(tmp_path / 'out.safetensors')])
  assert not (tmp_path / 'out.safetensors').exists()


def test_features_match_pytorch(variables, tmp_path, record_property):
  torch = pytest.importorskip('torch', reason='PyTorch (optional, test-only) not installed')
  torch.manual_seed(0)
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  net = torch_reference.ResNet18(num_outputs=1000)
  state = net.state_dict()
  assert {k: tuple(v.shape) for k, v in state.items()} == torchvision_shapes()
  with torch.no_grad():  # Every weight and statistic random; BatchNorm variances positive.
    for name, t in state.items():
      if name.endswith('num_batches_tracked'):
        t.fill_(11)
      elif name.endswith('running_var'):
        t.uniform_(0.5, 2.0)
      elif name.endswith(('running_mean', '.bias')):
        t.normal_(0.0, 0.2)
      elif name.endswith('weight') and t.ndim == 1:
        t.uniform_(0.5, 1.5)
      else:
        torch.nn.init.kaiming_normal_(t)
  net.eval()

  pth, st = str(tmp_path / 'r18.pth'), str(tmp_path / 'r18.safetensors')
  torch.save(state, pth)
  convert_weights.main([pth, st])

  images = np.random.default_rng(1).uniform(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)
  mean, std = np.array(resnet.IMAGENET_MEAN), np.array(resnet.IMAGENET_STD)
  normalised = ((images - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
  with torch.no_grad():
    expected = net.features(torch.from_numpy(normalised)).numpy()

  model = resnet.ResNet18Gaze(conv_impl='xla')
  for path in (pth, st):
    loaded = torchvision.init_variables_from(path, variables)
    features = np.asarray(model.apply(loaded, images, train=False, features_only=True))
    diff = float(np.max(np.abs(features - expected)))
    print(f'{path}: max |flax - torch| = {diff:.3g} (features up to '
          f'{np.max(np.abs(expected)):.3g})')
    record_property(f'max_abs_diff_{path.rsplit(".", 1)[1]}', diff)
    np.testing.assert_allclose(features, expected, rtol=1e-5,
                               atol=1e-5 * np.max(np.abs(expected)))
