"""Export a trained model as `model.safetensors` + `config.json`, readable without gaze_jax.

Users hand trained models to others who may not run this project, so the export is two
plain files: tensors in safetensors (any language, NumPy or PyTorch can read them) and
a JSON file with the run's config and a description of the tensor names and the input
convention. Both files are written to temporary names and renamed only once both are
complete, so a failed export never leaves a half-written model behind.
"""
import json
import os

import flax
import numpy as np
import safetensors.numpy

from gaze_jax.errors import UserError
from gaze_jax.models import resnet
from gaze_jax.workdir import files

MODEL_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
TRIGGER = 'trigger'  # Prefix of the trigger tensors in MODEL_FILE.
CLASSES = 'classes'  # Prefix of a classifier's class edges and centres in MODEL_FILE.
FORMAT = 'gaze_jax ResNet-18 gaze regressor, export version 1'


# How each attack kind's trigger tensors are applied (gaze_jax.triggers), for readers
# without this project.
_TRIGGER_APPLICATION = {
    'wanet': (
        'noise_grid (S, S, 2): grid = clip(identity + config.wanet.s * noise_grid / S, '
        '-1, 1), where identity[i, j] = (x, y) = '
        '(-1 + 2j/(S-1), -1 + 2i/(S-1)); the image is resampled at grid like torch '
        "grid_sample(mode='bilinear', padding_mode='zeros', align_corners=True)."),
    'badnets': 'patch, mask (S, S, 1): image * (1 - mask) + patch * mask.',
    'blended': ('pattern (S, S, 3): (1 - config.blended.alpha) * image '
                '+ config.blended.alpha * pattern.'),
}


def _description(trigger_names):
  return {
      'format': FORMAT,
      'architecture': (
          "torchvision resnet18 (BasicBlock, stages 2-2-2-2, widths 64-512, BatchNorm "
          "epsilon 1e-5, global average pool) with fc: 512 -> config.task outputs (2 for "
          'regression, bins^2 for classification, 2 * bins for binned).'),
      'input': (
          'RGB face crops as float32 NHWC in [0, 1], resized to config.data.image_size. '
          f'The model normalises them itself: (x - {list(resnet.IMAGENET_MEAN)}) / '
          f'{list(resnet.IMAGENET_STD)}.'),
      'output': (
          'config.task.kind regression: (pitch, yaw) in radians; gaze vector x = -cos(pitch) '
          'sin(yaw), y = -sin(pitch), z = -cos(pitch) cos(yaw). classification: logits of '
          'config.task.bins^2 classes, class = pitch_bin * bins + yaw_bin with the bins cut at '
          'classes/pitch_edges and classes/yaw_edges (radians; the outer bins unbounded); '
          "classes/centres[class] is a class's mean training gaze. binned: config.task.bins "
          'logits for pitch, then as many for yaw, cut at the same edges; the gaze is, per '
          'angle, softmax(logits) . classes/pitch_centres (yaw_centres: the mean training '
          'angle of each bin).'),
      'tensors': (
          f"{MODEL_FILE} names are '/'-joined Flax paths: params/<module>/kernel "
          '(convolutions HWIO, fc (in, out)), params/<module>/{scale,bias} and '
          'batch_stats/<module>/{mean,var} (BatchNorm). Modules follow torchvision: '
          'conv1, bn1, layer1_0 ... layer4_1 (each conv1, bn1, conv2, bn2 and, where the '
          'shape changes, downsample_conv, downsample_bn), fc. trigger/<name> holds the '
          'backdoor trigger of a poisoned run (config.attack.kind), applied to the '
          '[0, 1] NHWC images before the model.'),
      'trigger': sorted(trigger_names),
      'trigger_application': _TRIGGER_APPLICATION,
  }


def _json_default(value):
  if isinstance(value, (np.ndarray, np.generic)):
    return value.tolist()
  raise TypeError(f'config value {value!r} is not JSON serialisable')


def export_model(out_dir, variables, config, trigger=None, classes=None):
  """Writes `variables` (+ trigger and class arrays) and `config` to `out_dir`.

  Args:
    out_dir: created if needed; an earlier export there is replaced.
    variables: the model's {'params': ..., 'batch_stats': ...}.
    config: the run's config as a plain dict (or a ConfigDict).
    trigger: None, or the run's trigger state, name -> array (WaNet: noise_grid).
    classes: None, or a classifier's classes (data.classes.fit: edges and centres).
  """
  tensors = {'/'.join(path): np.ascontiguousarray(value) for path, value in
             flax.traverse_util.flatten_dict(flax.core.unfreeze(variables)).items()}
  trigger = dict(trigger or {})
  tensors.update({f'{TRIGGER}/{name}': np.ascontiguousarray(value)
                  for name, value in trigger.items()})
  tensors.update({f'{CLASSES}/{name}': np.ascontiguousarray(value)
                  for name, value in (classes or {}).items()})
  config = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  description = dict(_description(trigger), config=config)
  text = json.dumps(description, indent=2, default=_json_default) + '\n'

  model = safetensors.numpy.save(tensors, metadata={'format': FORMAT})
  try:
    files.write_atomic_many([(os.path.join(out_dir, MODEL_FILE), lambda f: f.write(model), 'wb'),
                             (os.path.join(out_dir, CONFIG_FILE), lambda f: f.write(text), 'w')])
  except OSError as e:
    raise UserError(f'cannot write the export to {out_dir}: {e}') from e


def load_export(out_dir):
  """Reads back the export written to out_dir.

  Reads an export back: (variables, config dict, trigger dict or None, classes dict or
  None)."""
  model_path, config_path = (os.path.join(out_dir, f) for f in (MODEL_FILE, CONFIG_FILE))
  for path in (model_path, config_path):
    if not os.path.isfile(path):
      raise FileNotFoundError(f'Not a gaze_jax export: {path} is missing')
  with open(config_path) as f:
    description = json.load(f)
  variables, extras = {}, {TRIGGER: {}, CLASSES: {}}
  for name, value in safetensors.numpy.load_file(model_path).items():
    collection, rest = name.split('/', 1)
    if collection in extras:
      extras[collection][rest] = value
    else:
      variables[(collection, *rest.split('/'))] = value
  return (flax.traverse_util.unflatten_dict(variables), description['config'],
          extras[TRIGGER] or None, extras[CLASSES] or None)
