"""Experiment stage: the main job (control + poisoned model + report), sweeps, fine-tuning."""
