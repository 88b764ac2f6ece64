"""When the training loop logs, evaluates and checkpoints: declared once per run.

The Flax examples declare this with clu's periodic actions and big_vision with `itstime`;
clu's writers pull in TensorFlow, which this project does not depend on, so this is the
small equivalent: a table of named actions, each due at a declared period of steps or
epochs, asked once per step which are due. A step where any is due is a sync point, where
the loop fetches the metrics from the device.
"""
import dataclasses

LOG, EVALUATE, CHECKPOINT = 'log', 'evaluate', 'checkpoint'


@dataclasses.dataclass(frozen=True)
class Period:
  """When an action is due: a period in steps, in epochs, and/or at the end.

  Due every `steps` steps, at the end of every `epochs`-th epoch, and/or at the last step
  (0 or False: not on that account)."""
  steps: int = 0
  epochs: int = 0
  at_end: bool = False


@dataclasses.dataclass(frozen=True)
class Cadence:
  """The run's actions ({name: Period}) over `total_steps` steps of `steps_per_epoch`."""
  steps_per_epoch: int
  total_steps: int
  periods: tuple  # ((name, Period), ...)

  def due(self, done):
    """frozenset of the actions due once `done` steps are done."""
    epoch, within = divmod(done, self.steps_per_epoch)
    return frozenset(
        name for name, p in self.periods
        if (p.steps and done % p.steps == 0) or (p.at_end and done == self.total_steps) or
        (p.epochs and within == 0 and epoch % p.epochs == 0))


def of_run(train, steps_per_epoch):
  """Builds the training loop's cadence from a run's train spec.

  Training metrics every log_every_steps; held-out evaluation every eval_every_epochs
  epochs and at the end; a checkpoint with every evaluation (what it measured is never
  lost) and every checkpoint_every_steps steps."""
  return Cadence(steps_per_epoch, steps_per_epoch * train.num_epochs, (
      (LOG, Period(steps=train.log_every_steps)),
      (EVALUATE, Period(epochs=train.eval_every_epochs, at_end=True)),
      (CHECKPOINT, Period(steps=train.checkpoint_every_steps,
                          epochs=train.eval_every_epochs, at_end=True)),
  ))
