"""gaze_jax: the WaNet warping backdoor on a ResNet-18 gaze regressor, in JAX/Flax."""
