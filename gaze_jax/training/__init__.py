"""Training stage: state and optimizer, the pure pmapped steps, evaluation over a split,
reading runs back, and the loop that runs them with its side effects."""
