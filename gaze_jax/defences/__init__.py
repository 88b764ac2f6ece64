"""Defences against the backdoors: is this face triggered, is this model backdoored, and can
the backdoor be removed, each a function of a trained run and a defender's clean data.

- scores.py: detection scores (AUROC by the rank formula, FPR at 95 % detection) and
  BackdoorBench's defence effectiveness rating; pure NumPy.
- network.py: a trained network as jitted predict / feature functions (no pmap).
- inputs.py: input-level detection (regression STRIP, classifier STRIP entropy, and a
  feature-space Mahalanobis detector).
- reverse.py: model-level detection by trigger reverse-engineering (a learnable WaNet-like
  warp field, a BadNets-like mask and pattern), optimised with optax inside one jit.
- mitigation.py: fine-tuning, Fine-Pruning and unlearning with the recovered trigger.
- population.py: the edge of the stage: run directories and experiment workdirs in,
  defences.json out.
"""
