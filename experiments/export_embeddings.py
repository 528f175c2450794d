"""Export track embeddings (audio, text, fused) of a trained LARP run to .npz + manifest.

python -m experiments.export_embeddings --config=configs/larp.py:demo --workdir=DIR \
    [--run=stage3] [--split=test] [--output=DIR/export/test_embeddings.npz]

In a notebook, call `larp_jax.jobs.larp_export.export_run(config, workdir, run, split, output)`.
"""

from absl import app, flags

from larp_jax.jobs import larp_export
from larp_jax.training import launch

launch.define_flags("configs/larp.py")
flags.DEFINE_string("run", "stage3", "Stage run whose best weights to use.")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Tracks to embed.")
flags.DEFINE_string("output", None, "Output .npz (default: WORKDIR/export/<split>_<run>.npz).")
FLAGS = flags.FLAGS


def main(config, workdir):
  manifest = larp_export.export_run(config, workdir, FLAGS.run, FLAGS.split, FLAGS.output)
  print(
      f"Wrote {manifest['num_items']} embeddings to {manifest['file']} "
      f"(embedding space {manifest['embedding_space_id']})."
  )


if __name__ == "__main__":
  app.run(launch.main_for(main))
