"""Workdir stage: everything a run keeps on disk (config.json, checkpoints, the lock, metric
logs), written atomically."""
