"""Every invalid config value fails before compilation, naming the field."""
import pytest

from configs import clean
from configs import mpii224
from configs import wanet
from configs import wanet_strong
from gaze_jax import config_validation
from gaze_jax.errors import ConfigError


def test_shipped_configs_are_valid():
  config_validation.validate(clean.get_config())
  config_validation.validate(wanet.get_config())
  config_validation.validate(wanet_strong.get_config())


def test_real_data_config_names_the_missing_files(tmp_path):
  config = mpii224.get_config()
  config.data.manual_dir = str(tmp_path)
  with pytest.raises(ConfigError, match=r'config.data.manual_dir=.*missing: p00.mat'):
    config_validation.validate(config)
  for person in range(15):
    (tmp_path / f'p{person:02d}.mat').touch()
  config_validation.validate(config)


@pytest.mark.parametrize('field, value', [
    ('seed', -1),
    ('data.image_size', 100),
    ('data.protocol', 'k_fold'),
    ('data.test_fraction', 1.0),
    ('data.test_person', 15),
    ('data.manual_dir', '/nonexistent/mpiifacegaze'),
    ('data.synthetic.persons', 1),
    ('data.synthetic.image_size', 16),
    ('model.dtype', 'float16'),
    ('model.conv_impl', 'winograd'),
    ('model.init_from', '/nonexistent/resnet18.safetensors'),
    ('train.batch_size', 0),
    ('train.num_epochs', 0),
    ('train.optimizer', 'lamb'),
    ('train.learning_rate', -0.1),
    ('train.learning_rate', float('nan')),
    ('train.schedule', 'linear'),
    ('train.step_epochs', (8, 5)),
    ('train.momentum', 1.5),
    ('train.weight_decay', -1e-4),
    ('train.checkpoint_every_steps', 0),
    ('attack.kind', 'trojan'),
    ('attack.pc', 1.5),
    ('attack.cross_ratio', 20.0),
    ('target.mode', 'all_to_all'),
    ('target.gaze', (0.1,)),
    ('target.gaze', (float('inf'), 0.0)),
    ('wanet.k', 1),
    ('wanet.s', -0.5),
    ('wanet.grid_rescale', 0.0),
    ('badnets.patch_fraction', 0.0),
    ('badnets.position', 'left'),
    ('blended.alpha', 1.2),
    ('eval.batch_size', 0),
    ('eval.asr_thresholds', ()),
])
def test_invalid_field_is_named(field, value):
  config = wanet.get_config()
  parent = config
  *path, leaf = field.split('.')
  for part in path:
    parent = parent[part]
  parent[leaf] = value
  with pytest.raises(ConfigError, match=f'config.{field}='):
    config_validation.validate(config)


def test_batch_not_divisible_by_devices(monkeypatch):
  monkeypatch.setattr(config_validation.jax, 'device_count', lambda: 8)
  config = clean.get_config()
  config.train.batch_size = 12
  with pytest.raises(ConfigError, match='config.train.batch_size=12.*multiple of the 8 devices'):
    config_validation.validate(config)
