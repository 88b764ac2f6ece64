"""Convert torchvision ResNet-18 weights from `.pth` to `.safetensors` (needs PyTorch once).

`--config.model.init_from` reads `.safetensors` with NumPy alone, so a user with PyTorch
on some machine converts once and training machines need no PyTorch:

  python -m gaze_jax.convert_weights resnet18-f37072fd.pth resnet18.safetensors

The file is checked against the model before it is written, so a wrong state dict is
reported here rather than at the start of training. All tensors are kept, `fc` included.
"""
import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from gaze_jax.models import resnet
from gaze_jax.models import torchvision
from gaze_jax.workdir import files


def convert(in_path, out_path):
  """Writes the state dict at `in_path` to `out_path` after checking names and shapes."""
  state = torchvision.load_torchvision_resnet18(in_path)
  abstract = jax.eval_shape(resnet.ResNet18Gaze(conv_impl='xla').init,
                            jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  torchvision.torchvision_to_flax(state, abstract)  # Raises on any mismatch.
  data = safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in state.items()})
  files.write_atomic(out_path, lambda f: f.write(data), mode='wb')


def main(argv=None):
  """Converts the state dict named on the command line to a .safetensors file."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('input', help="torchvision resnet18 state dict (.pth)")
  parser.add_argument('output', help='where to write the .safetensors file')
  args = parser.parse_args(argv)
  try:
    convert(args.input, args.output)
  except (OSError, ImportError, ValueError) as e:
    sys.exit(f'convert_weights: {e}')
  print(f'Wrote {args.output}')


if __name__ == '__main__':
  main()
