"""The real MPIIFaceGaze at 224 px on a GPU/TPU: the WaNet-on-gaze study's setting.

    python run.py --config configs/mpii224.py \
        --config.data.manual_dir=/path/to/MPIIFaceGaze_normalized \
        --config.model.init_from=resnet18.safetensors --workdir runs/mpii224

That study: ImageNet-pretrained ResNet-18, 224 px, Adam 1e-4, L1, 8 epochs, a random 80/20
split (identities shared), pc=0.2, cross_ratio=2, target (-0.2, 0.0) rad, k=28, s=1.0.
For the published protocol use `--config.data.protocol=leave_one_person_out
--config.data.test_person=N` (15 runs, one per person).
"""
from gaze_jax.configs import wanet_strong


def get_config():
  c = wanet_strong.get_config()
  c.data.image_size = 224
  c.data.manual_dir = 'data/MPIIFaceGaze_normalized'  # Folder with p00.mat ... p14.mat.
  c.model.dtype = 'bfloat16'      # Parameters stay float32.
  c.model.conv_impl = 'xla'       # cuDNN/TPU convolutions; im2col only pays on CPU.
  c.train.batch_size = 64
  c.train.num_epochs = 8
  c.train.learning_rate = 1e-4
  c.train.warmup_epochs = 0.0
  c.train.checkpoint_every_steps = 500
  c.train.log_every_steps = 50
  c.eval.batch_size = 256
  return c
