"""PyTorch reference train step: the same ResNet-18 gaze regressor, loss and optimizer.

A plain torchvision-style ResNet-18 (written out, so torchvision is not needed) with a
Linear(512, 2) head, L1 loss and the optimizer of the JAX benchmark, timed the same way:
median of `--steps` steps after `--warmup` untimed ones, in each of `--variants`: float32
with NCHW (PyTorch's default) or channels_last memory format (oneDNN's preferred one on CPUs;
which is faster depends on the machine), and bfloat16 autocast in channels_last (float32
parameters and optimizer, bfloat16 convolutions and matmuls: PyTorch's mixed precision).
With `--poison wanet` every batch is poisoned as the official WaNet code does it
(`grid_sample` on a repeated fixed grid for the backdoor samples, the grid plus random noise
for the cross samples). `bench_train_step.py` runs this script in a subprocess so the two
frameworks never share a thread pool; prints one JSON object per measurement. Optional
dependency: `pip install torch==2.13.0`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
  """torchvision's BasicBlock."""

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = None
    if stride != 1 or inplanes != planes:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes))

  def forward(self, x):
    """Applies the block to (N, C, H, W) features `x`."""
    identity = x if self.downsample is None else self.downsample(x)
    y = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(y)) + identity)


class ResNet18(nn.Module):
  """ResNet-18 with torchvision's parameter names and a Linear(512, num_outputs) head.

  `forward` takes images in [0, 1] and normalises them (ImageNet statistics, not a buffer,
  so the state dict is exactly torchvision's); `features` takes normalised images.
  """

  def __init__(self, num_outputs=2):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), 1):
      stride = 1 if stage == 1 else 2
      setattr(self, f'layer{stage}', nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                   BasicBlock(planes, planes, 1)))
      inplanes = planes
    self.fc = nn.Linear(512, num_outputs)
    self._mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    self._std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

  def features(self, x):
    """The (N, 512) pooled features of normalised images `x`."""
    x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    for stage in range(1, 5):
      x = getattr(self, f'layer{stage}')(x)
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

  def forward(self, x):
    """The (N, num_outputs) outputs of images `x` in [0, 1]."""
    return self.fc(self.features((x - self._mean.to(x.device)) / self._std.to(x.device)))


def wanet_grid(size, k=4, s=0.5, seed=0):
  """The official WaNet trigger: a k x k noise field upsampled bicubically to a warp grid."""
  gen = torch.Generator().manual_seed(seed)
  ins = torch.rand(1, 2, k, k, generator=gen) * 2 - 1
  ins = ins / torch.mean(torch.abs(ins))
  noise_grid = F.interpolate(ins, size=size, mode='bicubic',
                             align_corners=True).permute(0, 2, 3, 1)
  array = torch.linspace(-1, 1, steps=size)
  x, y = torch.meshgrid(array, array, indexing='ij')
  identity_grid = torch.stack((y, x), 2)[None, ...]
  return identity_grid, noise_grid, s


def wanet_poison(images, labels, trigger, pc=0.1, cross_ratio=2.0,
                 target=(-0.2, 0.0)):
  """The official WaNet training-batch poisoning (backdoor + noise-mode samples)."""
  identity_grid, noise_grid, s = trigger
  bs, size = images.shape[0], images.shape[-1]
  num_bd, num_cross = int(bs * pc), int(bs * pc * cross_ratio)
  grid_temps = torch.clamp(identity_grid + s * noise_grid / size, -1, 1)
  ins = torch.rand(num_cross, size, size, 2, device=images.device) * 2 - 1
  grid_temps2 = torch.clamp(grid_temps.repeat(num_cross, 1, 1, 1) + ins / size, -1, 1)
  inputs_bd = F.grid_sample(images[:num_bd], grid_temps.repeat(num_bd, 1, 1, 1),
                            align_corners=True)
  inputs_cross = F.grid_sample(images[num_bd:num_bd + num_cross], grid_temps2,
                               align_corners=True)
  targets_bd = torch.tensor(target, dtype=labels.dtype, device=labels.device).expand(num_bd, 2)
  images = torch.cat([inputs_bd, inputs_cross, images[num_bd + num_cross:]])
  labels = torch.cat([targets_bd, labels[num_bd:]])
  return images, labels


def measure(size, batch, steps, warmup, poison, optimizer, channels_last=False,
            device='cpu', autocast_dtype=None):
  """Median images/s, wall and process CPU seconds per step of the train step, as a dict."""
  torch.manual_seed(0)
  torch.backends.cudnn.benchmark = True  # Lets cuDNN pick its fastest kernels (GPU only).
  model = ResNet18().to(device)
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=memory_format)
  if optimizer == 'adam':
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
  else:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
  images = torch.rand(batch, 3, size, size, device=device)
  labels = torch.rand(batch, 2, device=device) - 0.5
  trigger = tuple(t.to(device) if torch.is_tensor(t) else t for t in wanet_grid(size))
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def step():
    x, y = images, labels
    if poison == 'wanet':
      with torch.no_grad():
        x, y = wanet_poison(x, y, trigger)
    x = x.contiguous(memory_format=memory_format)
    with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
      loss = F.l1_loss(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  model.train()
  for _ in range(warmup):
    step()
  sync()
  times, cpu_times = [], []
  for _ in range(steps):
    start, start_cpu = time.perf_counter(), time.process_time()
    step()
    sync()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - start_cpu)
  median = statistics.median(times)
  return {'size': size, 'batch': batch, 'poison': poison, 'step_s': median,
          'images_per_s': batch / median, 'cpu_s': statistics.median(cpu_times),
          'threads': torch.get_num_threads()}


# --variants names -> (channels_last, autocast dtype name or None).
VARIANTS = {
    'fp32_nchw': (False, None),
    'fp32_channels_last': (True, None),
    'bf16_channels_last': (True, 'bfloat16'),
}


def matmul_gflops(dtype='float32', n=2048, repeats=10):
  """Best (n x n) @ (n x n) GFLOP/s in `dtype` ('float32' | 'bfloat16') over `repeats` runs."""
  a, b = (torch.rand(n, n).to(getattr(torch, dtype)) for _ in range(2))
  a @ b
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def main(argv):
  """Measures every setting the flags ask for and prints one JSON object per measurement."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='64,224')
  parser.add_argument('--batches', default='32')
  parser.add_argument('--poison', default='clean,wanet')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--optimizer', choices=('adam', 'sgd'), default='adam')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated, of {", ".join(VARIANTS)}')
  parser.add_argument('--matmul', action='store_true',
                      help='first measure float32 and bfloat16 matmul GFLOP/s')
  args = parser.parse_args(argv)
  variants = args.variants.split(',')
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f'--variants: unknown {sorted(unknown)}; expected some of {list(VARIANTS)}')
  if args.matmul:
    print(json.dumps({'matmul_gflops': {d: matmul_gflops(d) for d in ('float32', 'bfloat16')}}),
          flush=True)
  for size in map(int, args.sizes.split(',')):
    for batch in map(int, args.batches.split(',')):
      for poison in args.poison.split(','):
        for variant in variants:
          channels_last, autocast = VARIANTS[variant]
          result = measure(size, batch, args.steps, args.warmup, poison, args.optimizer,
                           channels_last,
                           autocast_dtype=getattr(torch, autocast) if autocast else None)
          result.update(variant=variant, pid=os.getpid())
          print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
