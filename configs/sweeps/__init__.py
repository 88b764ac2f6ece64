"""Sweep grids: each file defines get_sweep(), a list of flat override dicts."""
