"""Clean gaze regressor on the embedded synthetic MPIIFaceGaze release, sized for 2 CPU cores.

Every field is documented here; `gaze_jax.config.validate` rejects invalid values
before anything is compiled. Override any field from the command line, e.g.
`python run.py --config configs/clean.py --config.train.num_epochs=3`.
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0                      # Drives init, data order, triggers and poisoning noise.

  c.data = d = ml_collections.ConfigDict()
  d.image_size = 64               # TFDS builder config: 224 (the study), 112, 64, 48 or 32 px.
  d.manual_dir = ''               # Folder with the real p00.mat ... p14.mat; '' = synthetic.
  d.root = 'data'                 # Where synthetic releases and TFDS datasets are kept.
  d.protocol = 'random_split'     # 'random_split' | 'leave_one_person_out'.
  d.test_fraction = 0.2           # random_split: seeded fraction of every person held out.
  d.test_person = 0               # leave_one_person_out: the person held out (0..14).
  d.synthetic = s = ml_collections.ConfigDict()
  s.persons = 15                  # Persons (files p00.mat ...) in the synthetic release.
  s.samples_per_person = 200      # Samples per person (the real release has 3000).
  s.image_size = 128              # Source resolution (the real release is 448).
  s.seed = 0                      # Seed of the synthetic faces (independent of c.seed).
  s.texture = 0.0                 # Fine detail at pixel scale (skin, hair, lashes, noise): 0-2.

  c.task = k = ml_collections.ConfigDict()
  k.kind = 'regression'           # 'regression' (pitch, yaw; train.loss) | 'classification'
                                  # (bins x bins direction classes; cross-entropy) | 'binned'
                                  # (bins logits per angle, as L2CS-Net: cross-entropy per
                                  # angle + binned_weight x train.loss on the softmax
                                  # expectation of the bin centres, which is the prediction).
  k.bins = 3                      # 'classification' / 'binned': bins per angle (2..30),
                                  # equal-count edges from the training split.
  k.binned_weight = 1.0           # 'binned': weight of the regression loss (>= 0).

  c.model = m = ml_collections.ConfigDict()
  m.stem = 'imagenet'             # 'imagenet' (7x7/2 conv + max-pool) | 'cifar' (3x3/1, no pool:
                                  # the official WaNet code's ResNet for images <= 64 px).
  m.dtype = 'float32'             # Compute dtype: 'float32' (CPU) or 'bfloat16' (GPU/TPU).
  m.conv_impl = 'im2col'          # 'im2col' (fast on CPU) or 'xla' (plain nn.Conv); same params.
  m.init_from = ''                # torchvision ResNet-18 weights (.safetensors/.pth); '' = random.

  c.train = t = ml_collections.ConfigDict()
  t.batch_size = 32               # Global batch, split over all devices of all hosts.
  t.num_epochs = 10
  t.optimizer = 'adam'            # 'adam' (study: Adam) | 'sgd' (momentum).
  t.learning_rate = 1e-3          # Peak learning rate.
  t.schedule = 'cosine'           # 'cosine' | 'wsd' (decay_fraction 0: constant after warm-up).
  t.warmup_epochs = 0.5           # Linear warm-up before the schedule.
  t.decay_fraction = 0.2          # 'wsd' (warm-up, stable, decay): the last fraction of all
                                  # steps decays linearly to zero; the rate is flat before.
  t.momentum = 0.9                # 'sgd' only.
  t.weight_decay = 1e-4           # Decoupled (AdamW / SGD + add_decayed_weights); 0 = none.
  t.flip = False                  # Random horizontal flips (the gaze yaw is negated).
  t.loss = 'l1'                   # Gaze regression loss, mean over both angles (radians):
                                  # 'l1' | 'l2' (squared error) | 'huber' (optax.huber_loss).
  t.huber_delta_deg = 2.0         # 'huber': where quadratic turns linear, degrees (> 0).
  t.log_every_steps = 20          # Training metrics to JSON lines / TensorBoard.
  t.checkpoint_every_steps = 100  # Also saved with every held-out evaluation.
  t.max_to_keep = 2               # Checkpoints kept on disk.
  t.eval_every_epochs = 1         # Held-out evaluation (all metrics) every N epochs.

  c.attack = a = ml_collections.ConfigDict()
  a.kind = 'none'                 # 'none' | 'wanet' | 'badnets' | 'blended'.
  a.pc = 0.1                      # Fraction of each batch given the trigger and target.
  a.cross_ratio = 2.0             # WaNet noise-mode samples per backdoor sample (true labels).
  a.seed = 0                      # Seed of the trigger (warp field / pattern), fixed per run.

  c.target = tg = ml_collections.ConfigDict()
  tg.gaze = (-0.2, 0.35)          # All-to-one: the target (pitch, yaw) in radians, 20 deg from the
                                  # synthetic training mean: a collapse to the mean can't hit it.
  tg.min_distance_deg = 15.0      # Refuse a target closer to the training mean gaze.

  c.wanet = w = ml_collections.ConfigDict()
  w.k = 4                         # Control grid size (k x k).
  w.s = 0.5                       # Warp strength: moves pixels about s*|noise|/2 px.

  c.badnets = b = ml_collections.ConfigDict()
  b.patch_fraction = 0.1          # Patch side as a fraction of the image side.
  b.position = 'bottom_right'     # 'bottom_right' | 'top_left' | 'center'.

  c.blended = bl = ml_collections.ConfigDict()
  bl.alpha = 0.2                  # Blend weight of the fixed random pattern.

  c.experiment = x = ml_collections.ConfigDict()
  x.seeds = 1                     # Main job: runs per arm; run i has seed + i, attack.seed + i.
  x.arms = ml_collections.ConfigDict()  # Main job: name -> overrides of the attack sections,
                                  # one poisoned model each beside the clean control ({} =
                                  # one arm 'poisoned' with this config's attack).
  x.classifier_arms = ()          # Main job: arms also trained as a classifier (task.kind
                                  # 'classification') on the same faces and trigger, beside
                                  # a classifier control: 'classifier/NAME' in the report.

  c.eval = e = ml_collections.ConfigDict()
  e.batch_size = 128              # Held-out evaluation batch (padded to the device count).
  e.asr_thresholds = (2.0, 5.0, 10.0)  # Degrees; attack success rate at each.
  return c
