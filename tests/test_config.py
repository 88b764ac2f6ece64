"""The config: every invalid value fails before compilation, naming the field; the specs;
overrides."""
import json

import pytest

from gaze_jax.configs import clean
from gaze_jax.configs import default
from gaze_jax.configs import factors
from gaze_jax.configs import fast_calibration
from gaze_jax.configs import frontier
from gaze_jax.configs import granularity
from gaze_jax.configs import length
from gaze_jax.configs import loss_l2
from gaze_jax.configs import mpii224
from gaze_jax.configs import population
from gaze_jax.configs import probe
from gaze_jax.configs import study
from gaze_jax.configs import wanet
from gaze_jax.configs import wanet_strong
from gaze_jax import config as config_lib
from gaze_jax.errors import ConfigError
from gaze_jax.errors import UserError
from gaze_jax.workdir import rundir


def test_shipped_configs_are_valid():
  arms = {study: ['official', 'strong'], default: ['official', 'positive'],
          fast_calibration: ['official', 'strong', 'positive'],
          probe: ['official', 'strong', 's2', 'strong_nonoise', 'badnets'],
          loss_l2: ['official'],
          population: ['positive', 'strong', 'official', 'badnets', 'blended'],
          factors: ['official', 'strong', 'positive', 's_only', 'pc_only', 'no_noise', 'k8',
                    'k16'],
          frontier: ['official', 's_only', 's025', 's15', 'badnets5', 'badnets10',
                     'blended5', 'blended10', 'blended20']}
  for module, names in arms.items():
    got = [name for name, _ in config_lib.validate(module.get_config()).experiment.arms]
    assert got == sorted(names)  # ConfigDict keeps its keys sorted.
  l2 = config_lib.validate(loss_l2.get_config())  # Only the loss differs from the main job.
  main_job = config_lib.validate(default.get_config())
  assert list(config_lib.differences(l2.config, main_job.config)) == ['train.loss']
  config_lib.validate(clean.get_config())
  config_lib.validate(wanet.get_config())
  config_lib.validate(wanet_strong.get_config())


def test_parametrised_configs_change_only_their_axis():
  """configs/length.py:MULT and configs/granularity.py:KIND,BINS differ from the main job's
  official arm in the one thing they name; a malformed parameter is refused."""
  base = fast_calibration.get_config()
  base.experiment.arms = {'official': {}}
  base = config_lib.validate(base).config
  for module, parameter, expected in (
      (length, '8', {'train.num_epochs': 80}),
      (granularity, 'binned,30', {'task.kind': 'binned', 'task.bins': 30}),
      (granularity, 'classification,12', {'task.kind': 'classification', 'task.bins': 12})):
    got = config_lib.validate(module.get_config(parameter)).config
    assert {f: got[f.split('.')[0]][f.split('.')[1]]
            for f in config_lib.differences(got, base)} == expected
  for module, parameter in ((length, 'x2'), (length, '0'), (granularity, 'binned,many')):
    with pytest.raises(ConfigError, match=module.__name__.rsplit('.', 1)[-1]):
      module.get_config(parameter)


def test_real_data_config_names_the_missing_files(tmp_path):
  config = mpii224.get_config()
  config.data.manual_dir = str(tmp_path)
  with pytest.raises(ConfigError, match=r'config.data.manual_dir=.*missing: p00.mat'):
    config_lib.validate(config)
  for person in range(15):
    (tmp_path / f'p{person:02d}.mat').touch()
  config_lib.validate(config)


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
    ('train.momentum', 1.5),
    ('train.weight_decay', -1e-4),
    ('train.checkpoint_every_steps', 0),
    ('attack.kind', 'trojan'),
    ('attack.pc', 1.5),
    ('attack.cross_ratio', 20.0),
    ('target.gaze', (0.1,)),
    ('target.gaze', (float('inf'), 0.0)),
    ('wanet.k', 1),
    ('wanet.s', -0.5),
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
    config_lib.validate(config)


def test_batch_not_divisible_by_devices(monkeypatch):
  monkeypatch.setattr(config_lib.jax, 'device_count', lambda: 8)
  config = clean.get_config()
  config.train.batch_size = 12
  with pytest.raises(ConfigError, match='config.train.batch_size=12.*multiple of the 8 devices'):
    config_lib.validate(config)


def test_specs_carry_the_config():
  config = wanet.get_config()
  config.target.gaze = [0.1, -0.3]  # Lists become tuples: specs are hashable.
  run = config_lib.validate(config)
  assert run.attack == config_lib.AttackSpec(kind='wanet', target_gaze=(0.1, -0.3))
  assert run.train.batch_size == config.train.batch_size and run.data.synthetic.persons == 15
  assert run.model == config_lib.ModelSpec()
  expected = json.loads(json.dumps(config.to_dict()))
  del expected['experiment']  # A set of runs' design, not part of any one run.
  assert run.config == expected and run.experiment == config_lib.ExperimentSpec()
  assert hash(run) == hash(config_lib.validate(config))


def test_apply_overrides_keeps_types_and_refuses_unknown_fields():
  config = wanet.get_config()
  config.lock()
  out = config_lib.apply_overrides(config, {'wanet.s': 1, 'attack.kind': 'blended'})
  assert out.wanet.s == 1.0 and isinstance(out.wanet.s, float)
  assert config.wanet.s == 0.5 and config.attack.kind == 'wanet'  # The base is untouched.
  for bad in ({'wanet.q': 1}, {'nosection.k': 1}, {'wanet.k': 1.5}):
    with pytest.raises(ConfigError, match='override'):
      config_lib.apply_overrides(config, bad)


def test_derive_validates_the_variant():
  run = config_lib.validate(wanet.get_config())
  clean_run = config_lib.derive(run, {'attack.kind': 'none'})
  assert clean_run.attack.kind == 'none' and clean_run.train == run.train
  assert sorted(config_lib.differences(run.config, clean_run.config)) == ['attack.kind']
  with pytest.raises(ConfigError, match='config.attack.pc=2.0'):
    config_lib.derive(run, {'attack.pc': 2.0})


def test_experiment_arms_are_validated():
  config = wanet.get_config()
  config.experiment.seeds = 3
  config.experiment.arms = {'official': {}, 'strong': {'wanet': {'s': 1.0}}}
  run = config_lib.validate(config)
  assert run.experiment == config_lib.ExperimentSpec(
      seeds=3, arms=(('official', ()), ('strong', (('wanet.s', 1.0),))))
  config.experiment.arms.strong.train = {'num_epochs': 20}  # Would need its own control.
  with pytest.raises(ConfigError, match='config.experiment.arms.strong=.*attack sections'):
    config_lib.validate(config)
  config.experiment.arms = {'bad': {'wanet': {'s': -1.0}}}
  with pytest.raises(ConfigError, match='config.wanet.s=-1.0 is invalid'):
    config_lib.validate(config)


def test_default_config_is_the_documented_fast_recipe():
  """configs/default.py is the recipe of the README's main job and recipe table."""
  run = config_lib.validate(default.get_config())
  t = run.train
  assert (run.data.image_size, t.batch_size, t.num_epochs) == (48, 32, 10)
  assert (t.optimizer, t.learning_rate, t.schedule, t.decay_fraction) == ('adam', 2e-3, 'wsd',
                                                                          0.2)
  assert (t.loss, run.task.kind, run.model.conv_impl) == ('l1', 'regression', 'im2col')
  # 15 persons x 200 faces, 20% held out: 2,400 training faces, 75 steps an epoch, 750 steps.
  s = run.data.synthetic
  assert (s.persons, s.samples_per_person, run.data.test_fraction) == (15, 200, 0.2)
  assert dict(run.experiment.arms) == {
      'official': (),
      'positive': (('attack.cross_ratio', 0.0), ('attack.pc', 0.2), ('wanet.s', 1.0))}
  a = run.attack
  assert (a.kind, a.k, a.s, a.pc, a.cross_ratio) == ('wanet', 4, 0.5, 0.1, 2.0)  # Official.
  assert run.experiment.classifier_arms == ()


def test_configs_live_at_the_top_of_the_repository():
  """configs/ beside gaze_jax/ (python run.py --config configs/wanet.py); the package reaches
  the same files, so the CLI's default config is configs/default.py."""
  import os  # pylint: disable=g-import-not-at-top
  from gaze_jax import cli  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  top = os.path.join(root, 'configs')
  assert os.path.isfile(os.path.join(top, 'default.py'))
  assert os.path.samefile(os.path.dirname(default.__file__), top)
  assert os.path.samefile(cli.DEFAULT_CONFIG, os.path.join(top, 'default.py'))


def _saved_by_an_earlier_version(tmp_path, **retired):
  """A run directory whose config.json is the WaNet config with the fields an earlier version
  also wrote (the retired ones), at their values unless given."""
  saved = config_lib.to_dict(wanet.get_config())
  saved.pop('experiment')
  values = {'wanet.grid_rescale': 1.0, 'target.mode': 'fixed', 'target.offset': [0.0, 0.3],
            'train.step_epochs': [5, 8], 'train.decay_rate': 0.9, **retired}
  for name, value in values.items():
    section, field = name.split('.')
    saved[section][field] = value
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  return str(tmp_path)


def test_a_run_of_an_earlier_version_reads_back_without_its_retired_fields(tmp_path):
  run_dir = _saved_by_an_earlier_version(tmp_path)
  current = config_lib.to_dict(wanet.get_config())
  current.pop('experiment')
  assert config_lib.to_dict(rundir.load_config(run_dir)) == current
  rundir.check_same_config(run_dir, current)  # Resumable under this version's config.


@pytest.mark.parametrize('field,value', [('wanet.grid_rescale', 2.0), ('target.mode', 'mirror'),
                                         ('train.schedule', 'step')])
def test_a_run_of_a_retired_option_is_refused_naming_it(tmp_path, field, value):
  run_dir = _saved_by_an_earlier_version(tmp_path, **{field: value})
  for read in (rundir.load_config,
               lambda d: rundir.check_same_config(d, config_lib.to_dict(wanet.get_config()))):
    with pytest.raises(UserError, match=rf"config.json does not hold a run config.*config\.{field}="
                                        rf"'?{value}'? is an option this version no longer has"):
      read(run_dir)


def test_a_run_is_resumed_under_another_checkpoint_cadence_but_not_another_recipe(tmp_path):
  saved = config_lib.to_dict(default.get_config())
  saved.pop('experiment')
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  later = json.loads(json.dumps(saved))
  later['train'].update(checkpoint_every_steps=saved['train']['checkpoint_every_steps'] + 1,
                        max_to_keep=saved['train']['max_to_keep'] + 1)
  rundir.check_same_config(str(tmp_path), later)  # When it saves is not what it computes.
  later['train']['learning_rate'] *= 2
  with pytest.raises(UserError, match=r'another config \(differs in train\.learning_rate\)'):
    rundir.check_same_config(str(tmp_path), later)
