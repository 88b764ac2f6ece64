"""The defences on networks whose behaviour is known: STRIP by hand, the feature detector
against SciPy, trigger reverse-engineering finding a planted warp (and nothing on the
clean twin), Fine-Pruning cutting exactly its lowest-ranked channels, fine-tuning holding
them cut, and every defence refusing bad input in one line.

The positive control is constructed, not trained: its images are smooth random faces plus
a fixed high-frequency probe P, and its network reads a gaze g(x) from the smooth part and
switches to the target when t(x) = <x - P, w> / |w|^2 reaches 1/2, with w = warp(P) - P for
the planted WaNet warp: the planted warp gives t = 1 (to first order), other small warps
less, clean faces 0. Its clean twin is the same network without the switch.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import distance

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.attacks import wanet
from gaze_jax.configs import wanet as wanet_config
from gaze_jax.data import classes as classes_lib
from gaze_jax.defences import inputs
from gaze_jax.defences import mitigation
from gaze_jax.defences import network as network_lib
from gaze_jax.defences import reverse
from gaze_jax.errors import UserError

SIZE = 32
TARGET = (-0.3, 0.4)


class Planted(nn.Module):
  """g(x) from the smooth part of the image; with `planted`, the target where the probe
  correlation t(x) passes 1/2. Features: the two gaze readouts and t."""
  planted: bool = True
  sharpness: float = 20.0

  @nn.compact
  def __call__(self, x, train=False, features_only=False):
    w = self.param('w', nn.initializers.zeros, (SIZE, SIZE, 3))
    probe = self.param('probe', nn.initializers.zeros, (SIZE, SIZE, 3))
    t = jnp.sum((x - probe) * w, axis=(1, 2, 3)) / jnp.sum(w * w)
    readout = jnp.stack([jnp.mean(x[..., 0] - x[..., 2], axis=(1, 2)),
                         jnp.mean(x[:, :, :SIZE // 2] - x[:, :, SIZE // 2:], axis=(1, 2, 3))],
                        axis=-1)
    if features_only:
      return jnp.concatenate([readout, t[:, None]], axis=-1)
    gaze = nn.Dense(2, name='fc')(readout)
    if not self.planted:
      return gaze
    switch = jax.nn.sigmoid(self.sharpness * (t - 0.5))[:, None]
    return gaze + switch * (jnp.asarray(TARGET) - gaze)


def smooth_faces(key, n):
  """(n, SIZE, SIZE, 3) smooth random images in [0.2, 0.8] plus nothing high-frequency."""
  control = jax.random.uniform(key, (n, 4, 4, 3), minval=0.2, maxval=0.8)
  return np.asarray(jax.vmap(lambda c: wanet.upsample_bicubic(c, SIZE))(control))


@pytest.fixture(scope='module')
def planted():
  """(attack spec, trigger, poisoned Network, clean twin, pool faces, held-out faces)."""
  config = wanet_config.get_config()
  config.data.image_size = SIZE
  config.wanet.s = 2.0  # About a pixel at 32 px.
  config.target.gaze = TARGET
  spec = config_lib.validate(config, check_environment=False).attack
  trigger = triggers.make_trigger(spec, SIZE)
  a = np.arange(SIZE)
  probe = 0.08 * (np.sin(2 * np.pi * a / 5)[:, None] + np.sin(2 * np.pi * a / 5)[None, :])
  probe = np.repeat(probe[..., None], 3, axis=-1).astype(np.float32)
  w = np.asarray(triggers.apply_trigger(spec, trigger, probe[None] + 0.5))[0] - 0.5 - probe
  faces = smooth_faces(jax.random.key(0), 96) + probe
  params = {'w': jnp.asarray(w), 'probe': jnp.asarray(probe),
            'fc': {'kernel': jnp.asarray([[1.0, 0.0], [0.0, 1.5]]), 'bias': jnp.zeros(2)}}
  variables = {'params': params, 'batch_stats': {}}
  poisoned = network_lib.Network(Planted(True), variables)
  clean = network_lib.Network(Planted(False), variables)
  return spec, trigger, poisoned, clean, faces[:64], faces[64:]


def test_the_planted_network_is_a_backdoor(planted):
  spec, trigger, poisoned, clean, _, held_out = planted
  triggered = np.asarray(triggers.apply_trigger(spec, trigger, held_out))
  np.testing.assert_allclose(poisoned.outputs(triggered), np.broadcast_to(TARGET, (32, 2)),
                             atol=0.02)
  np.testing.assert_allclose(poisoned.outputs(held_out), clean.outputs(held_out), atol=0.02)


SETTINGS = reverse.Settings(steps=100, max_px=3.0)


def test_reverse_engineering_recovers_the_planted_warp(planted):
  spec, trigger, poisoned, _, pool, held_out = planted
  summary, found = reverse.reverse_engineer(poisoned, pool, held_out, jax.random.key(1),
                                            SETTINGS, families=('warp',), true_spec=spec,
                                            true_trigger=trigger)
  warp = summary['families']['warp']
  assert warp['spread_ratio'] < 0.2, warp
  assert summary['target_distance_deg'] < 2.0, summary
  assert warp['similarity'] > 0.4, warp  # Cosine of the recovered and planted fields.
  assert set(found) == {'warp'}


def test_reverse_engineering_finds_no_shortcut_on_the_clean_twin(planted):
  spec, trigger, _, clean, pool, held_out = planted
  summary, _ = reverse.reverse_engineer(clean, pool, held_out, jax.random.key(1), SETTINGS,
                                        true_spec=spec, true_trigger=trigger)
  assert summary['score'] > 0.7, summary  # The lowest spread ratio over both families.


class Linear(nn.Module):
  """Gaze = the mean of the first two channels: linear in the image, so a blend's
  prediction is the blend of the predictions."""
  constant: bool = False

  @nn.compact
  def __call__(self, x, train=False, features_only=False):
    means = jnp.mean(x, axis=(1, 2))
    if features_only:
      return means
    if self.constant:
      return jnp.broadcast_to(jnp.asarray([0.1, -0.2]), (x.shape[0], 2))
    return means[:, :2]


def test_strip_spread_by_hand():
  rng = np.random.default_rng(0)
  faces, pool = rng.uniform(size=(5, 8, 8, 3)), rng.uniform(size=(11, 8, 8, 3))
  key = jax.random.key(3)
  constant = network_lib.Network(Linear(constant=True), {'params': {}})
  np.testing.assert_allclose(inputs.strip_statistic(constant, faces, pool, key, n=6), 0,
                             atol=1e-3)
  idx = inputs.strip_indices(key, 5, 6, 11)
  blends = 0.7 * faces[:, None] + 0.3 * pool[idx]  # (5, 6, 8, 8, 3)
  preds = blends[..., :2].mean(axis=(2, 3))  # (5, 6, 2)
  pitch, yaw = preds[..., 0], preds[..., 1]
  vectors = np.stack([-np.cos(pitch) * np.sin(yaw), -np.sin(pitch),
                      -np.cos(pitch) * np.cos(yaw)], axis=-1)
  centre = vectors.mean(axis=1, keepdims=True)
  centre /= np.linalg.norm(centre, axis=-1, keepdims=True)
  expected = np.degrees(np.arccos(np.clip((vectors * centre).sum(-1), -1, 1))).mean(axis=1)
  linear = network_lib.Network(Linear(), {'params': {}})
  got = inputs.strip_statistic(linear, faces, pool, key, n=6, alpha=0.3)
  np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_strip_flags_the_planted_trigger(planted):
  """Blending keeps half the planted warp's probe signal (t = 1/2 x 1 + 1/2 x 0 at the
  switch), so STRIP sees it only partly: the score is measured, not required to win."""
  spec, trigger, poisoned, _, pool, held_out = planted
  triggered = np.asarray(triggers.apply_trigger(spec, trigger, held_out))
  out = inputs.detect('strip', poisoned, held_out, triggered, pool, jax.random.key(0))
  assert 0.0 <= out['auroc'] <= 1.0 and out['statistic'] == 'spread (deg)'
  feature = inputs.detect('feature', poisoned, held_out, triggered, pool, jax.random.key(0))
  assert feature['auroc'] > 0.95, feature  # t(x), a feature, jumps from 0 to 1.


def test_mahalanobis_is_scipys_with_the_shrunk_covariance():
  rng = np.random.default_rng(2)
  ref, query = rng.normal(size=(30, 4)), rng.normal(size=(5, 4))
  fit = inputs.fit_features(ref)
  cov = np.cov(ref, rowvar=False)
  shrunk = (1 - inputs.RIDGE) * cov + inputs.RIDGE * np.trace(cov) / 4 * np.eye(4)
  expected = [distance.mahalanobis(q, ref.mean(0), np.linalg.inv(shrunk)) for q in query]
  np.testing.assert_allclose(inputs.mahalanobis(fit, query), expected, rtol=1e-9)


class Tiny(nn.Module):
  """A small convolutional network with the defences' interface."""
  outputs: int = 2

  @nn.compact
  def __call__(self, x, train=False, features_only=False):
    x = nn.Conv(8, (3, 3), (2, 2))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = jnp.mean(x, axis=(1, 2))
    if features_only:
      return x
    return nn.Dense(self.outputs, name='fc')(x)


@pytest.fixture(scope='module')
def tiny():
  module = Tiny()
  variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(24, 16, 16, 3)).astype(np.float32)
  gaze = rng.uniform(-0.3, 0.3, size=(24, 2)).astype(np.float32)
  return network_lib.Network(module, variables), images, gaze


def test_fine_pruning_cuts_exactly_its_lowest_ranked_channels(tiny):
  net, images, _ = tiny
  features = np.asarray(net.features(images), np.float64)
  lowest = np.argsort(features.mean(axis=0), kind='stable')[:4]  # ceil(0.5 * 8).
  pruned, mask, channels = mitigation.prune(net, images, ratio=0.5)
  np.testing.assert_array_equal(channels, np.sort(lowest))
  np.testing.assert_array_equal(mask == 0, np.isin(np.arange(8), lowest))
  kernel = np.asarray(net.variables['params']['fc']['kernel'])
  bias = np.asarray(net.variables['params']['fc']['bias'])
  kept = features.copy()
  kept[:, lowest] = 0.0  # The channels zeroed before the head.
  np.testing.assert_allclose(pruned.outputs(images), kept @ kernel + bias, atol=1e-5)


def test_fine_tuning_learns_and_holds_the_pruned_channels_cut(tiny):
  net, images, gaze = tiny
  pruned, mask, channels = mitigation.prune(net, images, ratio=0.5)
  tuned, losses = mitigation.finetune(pruned, images, gaze, jax.random.key(0), steps=60,
                                      lr=1e-2, head_mask=mask)
  assert losses[-10:].mean() < losses[:10].mean()
  kernel = np.asarray(tuned.variables['params']['fc']['kernel'])
  assert np.all(kernel[channels] == 0) and np.all(kernel[mask == 1] != 0)


def test_fine_tuning_on_a_pool_prefix_is_fine_tuning_on_that_subset_with_one_compiled_step(tiny):
  net, images, gaze = tiny
  key = jax.random.key(3)
  leaves = lambda n: jax.tree.leaves(n.variables)
  alone, _ = mitigation.finetune(net, images[:7], gaze[:7], key, steps=3, lr=1e-2)
  compiled = mitigation._step._cache_size()  # pylint: disable=protected-access
  prefix, _ = mitigation.finetune(net, images[:20], gaze[:20], key, steps=3, lr=1e-2, count=7)
  for a, b in zip(leaves(alone), leaves(prefix)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  _, mask, _ = mitigation.prune(net, images, ratio=0.5)
  for count in (5, 20):  # Other fractions of the same pool, pruned or not: no new compile.
    mitigation.finetune(net, images[:20], gaze[:20], key, steps=3, lr=1e-2, count=count)
    mitigation.finetune(net, images[:20], gaze[:20], key, steps=3, lr=1e-2, count=count,
                        head_mask=mask)
  assert mitigation._step._cache_size() == compiled + 1  # pylint: disable=protected-access


def test_unlearning_puts_the_trigger_on_a_share_of_each_batch(tiny):
  """An invisible trigger (mask 0) trains exactly as plain fine-tuning; a visible one
  changes the result: the trigger is applied inside the step, labels untouched."""
  net, images, gaze = tiny
  key = jax.random.key(0)
  plain, _ = mitigation.finetune(net, images, gaze, key, steps=3, lr=1e-2)

  def patch(logit):
    return {'mask': jnp.full((16, 16, 1), logit), 'pattern': jnp.zeros((16, 16, 3))}

  settings = reverse.Settings()
  unseen, _ = mitigation.finetune(net, images, gaze, key, steps=3, lr=1e-2,
                                  trigger=('patch', settings), trigger_params=patch(-100.0))
  seen, _ = mitigation.finetune(net, images, gaze, key, steps=3, lr=1e-2,
                                trigger=('patch', settings), trigger_params=patch(100.0))
  leaves = lambda n: jax.tree.leaves(n.variables['params'])
  for a, b in zip(leaves(plain), leaves(unseen)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(leaves(plain), leaves(seen)))


def test_classifier_reverse_engineering_scores_every_class(tiny):
  net, images, gaze = tiny
  classifier = network_lib.Network(Tiny(outputs=4), Tiny(outputs=4).init(
      jax.random.key(1), jnp.zeros((1, 16, 16, 3))), 'classification')
  summary, _ = reverse.reverse_engineer(classifier, images, images, jax.random.key(0),
                                        reverse.Settings(steps=3), families=('patch', 'warp'))
  indices = {}
  for family, found in summary['families'].items():
    per_class = found['per_class']
    assert len(per_class) == 4 and found['flip_rate'] == max(per_class)
    assert found['recovered_target'] == int(np.argmax(per_class))
    deviation = np.median(np.abs(np.asarray(per_class) - np.median(per_class))) * 1.4826
    excess = max(per_class) - np.median(per_class)
    indices[family] = (excess / deviation if deviation else (np.inf if excess else 0.0))
    assert found['anomaly_index'] == pytest.approx(indices[family])
  assert summary['score'] == max(f['flip_rate'] for f in summary['families'].values())
  assert summary['anomaly_index'] == pytest.approx(max(indices.values()))
  assert summary['anomaly_family'] == max(indices, key=indices.get)
  classes = classes_lib.fit(gaze, 2)
  strip = inputs.strip_statistic(classifier, images[:3], images, jax.random.key(0), n=4)
  assert strip.shape == (3,) and np.all((strip >= 0) & (strip <= np.log(4) + 1e-6))
  tuned, _ = mitigation.finetune(classifier, images, gaze, jax.random.key(0), classes=classes,
                                 steps=2)
  assert tuned.task == 'classification'


@pytest.mark.parametrize('call, message', [
    (lambda n, x: inputs.strip_statistic(n, x[0], x, jax.random.key(0)), 'strip faces'),
    (lambda n, x: inputs.strip_statistic(n, x, x, jax.random.key(0), alpha=1.0), 'alpha'),
    (lambda n, x: inputs.feature_statistic(n, x, x[:1]), 'at least 2'),
    (lambda n, x: inputs.statistic('spectral', n, x, x, jax.random.key(0)), 'unknown'),
    (lambda n, x: reverse.search(n, 'blur', x, jax.random.key(0)), 'unknown trigger family'),
    (lambda n, x: reverse.search(n, 'warp', x[:1], jax.random.key(0)), 'at least 2'),
    (lambda n, x: mitigation.prune(n, x, ratio=1.0), 'prune ratio'),
    (lambda n, x: mitigation.finetune(n, x, np.zeros((3, 2)), jax.random.key(0)), 'gaze'),
    (lambda n, x: mitigation.finetune(n, x, np.zeros((len(x), 2)), jax.random.key(0),
                                      steps=0), 'steps'),
    (lambda n, x: mitigation.finetune(n, x, np.zeros((len(x), 2)), jax.random.key(0),
                                      count=len(x) + 1), 'count'),
])
def test_every_defence_refuses_bad_input_in_one_line(tiny, call, message):
  net, images, _ = tiny
  with pytest.raises(UserError, match=message) as e:
    call(net, images)
  assert '\n' not in str(e.value)
