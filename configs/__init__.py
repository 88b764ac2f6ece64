"""ml-collections experiment configs: one file per experiment kind."""
