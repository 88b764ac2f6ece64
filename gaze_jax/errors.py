"""Errors caused by the user (bad config, flags, files), reported in one line without a traceback."""


class UserError(Exception):
  """A mistake in what the user asked for; run.py prints it and exits non-zero."""


class ConfigError(UserError, ValueError):
  """An invalid config field; the message names the field, the value and what is allowed."""
