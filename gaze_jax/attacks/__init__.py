"""Attack stage: WaNet's warp, the BadNets and Blended baselines, and batch poisoning, all
pure and jittable, applied inside the compiled train step."""
