"""Metric stage: attack metrics on per-sample predictions and trigger imperceptibility, as
functions of plain arrays."""
