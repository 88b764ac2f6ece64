"""Contact sheet of decoded samples with landmarks and gaze arrows drawn on them.

    python -m tfds_mpiifacegaze.inspect --manual_dir DIR --out sheet.png

Samples go through exactly the builder's decoding (transpose, BGR -> RGB, resize,
landmark scaling), so with the real release one sees at a glance whether orientation
and colours are right: the green eye-corner and magenta mouth-corner markers must sit
on the eye and mouth corners, faces must be upright with natural skin tones, and the
red gaze arrows (drawn from each eye as the public MPIIGaze code draws them) must
point where the eyes look. The blue arrow is the head pose, from between the eyes.
"""
import argparse
import itertools

from matplotlib.figure import Figure  # Renders with Agg; no pyplot, no display.
import numpy as np

from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib


def arrow(pitchyaw, length):
  """Image-plane (dx, dy) of a (pitch, yaw) direction (the MPIIGaze drawing)."""
  pitch, yaw = pitchyaw
  return -length * np.cos(pitch) * np.sin(yaw), -length * np.sin(pitch)


def contact_sheet(manual_dir, out, image_size=224, per_person=4, persons=None):
  """Writes a PNG: one row per person, its first per_person samples."""
  files = builder_lib.person_files(manual_dir)
  persons = sorted(files) if persons is None else persons
  fig = Figure(figsize=(2.2 * per_person, 2.35 * len(persons)))
  axes = fig.subplots(len(persons), per_person, squeeze=False)
  for row, person in zip(axes, persons):
    samples = itertools.islice(builder_lib.examples(files[person], person, image_size),
                               per_person)
    for ax, (index, ex) in itertools.zip_longest(row, samples, fillvalue=(None, None)):
      ax.axis('off')
      if ex is None:
        continue
      ax.imshow(ex['image'])
      marks = ex['landmarks']
      ax.plot(marks[:4, 0], marks[:4, 1], 'o', ms=3, mfc='none', mec='lime')
      ax.plot(marks[4:, 0], marks[4:, 1], 'o', ms=3, mfc='none', mec='magenta')
      length = 0.25 * image_size
      for eye in (marks[0:2].mean(0), marks[2:4].mean(0)):
        ax.arrow(*eye, *arrow(ex['gaze'], length), color='red', width=0.006 * image_size,
                 length_includes_head=True)
      ax.arrow(*marks[:4].mean(0), *arrow(ex['head_pose'], length), color='deepskyblue',
               width=0.004 * image_size, length_includes_head=True)
      gaze = np.degrees(ex['gaze'])
      ax.set_title(f'p{person:02d} #{index} gaze ({gaze[0]:.0f}, {gaze[1]:.0f})\u00b0',
                   fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=100)


def main(argv=None):
  """Draws the contact sheet the command line asks for."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--manual_dir', required=True, help='Folder with p00.mat ...')
  parser.add_argument('--out', required=True, help='PNG to write.')
  parser.add_argument('--image_size', type=int, default=224,
                      choices=builder_lib.IMAGE_SIZES, help='Builder config to decode to.')
  parser.add_argument('--per_person', type=int, default=4)
  parser.add_argument('--persons', type=int, nargs='*',
                      help='Person numbers (default: all).')
  args = parser.parse_args(argv)
  contact_sheet(args.manual_dir, args.out, args.image_size, args.per_person, args.persons)


if __name__ == '__main__':
  main()
