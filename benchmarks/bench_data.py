"""Data throughput per builder config: TFDS build (.mat -> array_record) and grain reads.

Writes a small synthetic release (by default 2 persons x 100 samples at 448 px, the
real release's resolution), then for each config builds the dataset from it (reading
and validating the .mat files, transposing, resizing, zlib-encoding, writing
array_record) and reads it back through `gaze_jax.pipeline.train_batches`
(random access, zlib decoding, batching). Prints images per second for both.

  python -m benchmarks.bench_data                          # configs 224 and 64
  python -m benchmarks.bench_data --configs 224,112,64,32 --samples 300
"""
import argparse
import os
import shutil
import tempfile
import time

import tensorflow_datasets as tfds

from gaze_jax.data import pipeline
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib
from tfds_mpiifacegaze import synthesize


def directory_mb(path):
  """Total size, in MB (2^20 bytes), of the files under `path`."""
  return sum(os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(path) for f in files) / 2 ** 20


def main():
  """Builds and reads the synthetic release for each config and prints the throughput table."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--persons', type=int, default=2)
  parser.add_argument('--samples', type=int, default=100, help='Samples per person.')
  parser.add_argument('--size', type=int, default=448, help='Source image side.')
  parser.add_argument('--configs', default='224,64')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--read_epochs', type=float, default=3.0,
                      help='Data read per config, in passes over the dataset.')
  args = parser.parse_args()
  tfds.disable_progress_bar()
  root = tempfile.mkdtemp(prefix='bench_data_')
  try:
    num_images = args.persons * args.samples
    release = os.path.join(root, 'release')
    start = time.perf_counter()
    synthesize.write_release(release, args.persons, args.samples, args.size)
    synth_rate = num_images / (time.perf_counter() - start)
    rows = []
    for config in args.configs.split(','):
      data_dir = os.path.join(root, 'tfds', config)
      start = time.perf_counter()
      builder = builder_lib.MPIIFaceGaze(config=config, data_dir=data_dir)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=release))
      build_rate = num_images / (time.perf_counter() - start)
      source = builder.as_data_source(split='+'.join(sorted(builder.info.splits)))
      batches = pipeline.train_batches(source, args.batch, seed=0, process_index=0,
                                             process_count=1)
      next(batches)  # Threads started, first reads done.
      steps = max(1, int(args.read_epochs * len(source) / args.batch))
      start = time.perf_counter()
      for _ in range(steps):
        next(batches)
      read_rate = steps * args.batch / (time.perf_counter() - start)
      rows.append((config, build_rate, read_rate, directory_mb(data_dir)))
    print(f'release: {args.persons} persons x {args.samples} samples at {args.size} px '
          f'({directory_mb(release):.0f} MB of .mat), synthesized at {synth_rate:.0f} img/s; '
          f'{os.cpu_count()} CPUs')
    print(f'| config | build (.mat -> array_record) img/s | grain read img/s '
          f'(batch {args.batch}) | array_record MB |')
    print('|---|---|---|---|')
    for config, build_rate, read_rate, mb in rows:
      print(f'| {config} | {build_rate:.0f} | {read_rate:.0f} | {mb:.1f} |')
  finally:
    shutil.rmtree(root)


if __name__ == '__main__':
  main()
