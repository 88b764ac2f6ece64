"""gaze_jax entry point: `python run.py --help` (the same as the installed `gaze-jax`)."""
from gaze_jax import cli

if __name__ == '__main__':
  cli.run()
