"""Data stage: the release on disk, the TFDS dataset, the protocols' splits, grain batches,
and the helpers that put host batches on the devices."""
