"""Every default lives in the config files: no spec or model default differs from the
default config's (configs/clean.py), so code that builds a spec or a model directly runs what
`python run.py` runs."""
import dataclasses

import jax.numpy as jnp

from gaze_jax import config as config_lib
from gaze_jax.configs import clean
from gaze_jax.models import resnet


def _defaults(spec_class):
  return {f.name: f.default for f in dataclasses.fields(spec_class)
          if f.default is not dataclasses.MISSING}


def test_spec_defaults_equal_the_default_config():
  run = config_lib.validate(clean.get_config())
  sections = {'data': run.data, 'task': run.task, 'model': run.model, 'train': run.train,
              'attack': run.attack, 'eval': run.eval, 'experiment': run.experiment}
  compared = 0
  for name, spec in sections.items():
    for field, default in _defaults(type(spec)).items():
      assert getattr(spec, field) == default, f'{name}.{field}'
      compared += 1
  assert dataclasses.asdict(run.data.synthetic) == dataclasses.asdict(config_lib.SyntheticSpec())
  assert compared > 40  # Every section's fields were seen, not an empty loop.


def test_model_defaults_equal_the_default_config():
  model = config_lib.validate(clean.get_config()).model
  built = resnet.from_spec(model)
  plain = resnet.ResNet18Gaze()
  for field in ('conv_impl', 'stem', 'outputs'):
    assert getattr(plain, field) == getattr(built, field), field
  assert jnp.dtype(plain.dtype) == jnp.dtype(built.dtype)
