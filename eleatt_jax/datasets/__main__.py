"""`tfds build` for the eleatt-jax builders, without TensorFlow.

tensorflow-datasets 4.9.x's own ``tfds`` command imports its ``convert_format``
subcommand at start-up, and that module needs TensorFlow. This entry point
runs the very same ``build`` subcommand (`tensorflow_datasets.scripts.cli.build`,
same flags) with our builders registered, so no TensorFlow is needed:

  python -m eleatt_jax.datasets build nucla/dev \\
      --manual_dir=/data/nucla --data_dir=~/tensorflow_datasets

Where TensorFlow is installed, the plain command is equivalent:

  tfds build nucla/dev --imports=eleatt_jax.datasets --manual_dir=...

Builder kwargs go after the config, e.g. ``ntu_rgbd60/xsub/skip_corrupt=True``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
  """Runs ``build`` with ``--imports=eleatt_jax.datasets`` added."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] != "build":
    print(__doc__, file=sys.stderr)
    raise SystemExit(2)
  # pylint: disable=g-import-not-at-top
  from absl import app
  from tensorflow_datasets.scripts.cli import build, cli_utils
  # pylint: enable=g-import-not-at-top
  args = argv[1:]
  if not any(a.startswith("--imports") or a == "-i" for a in args):
    args.append("--imports=eleatt_jax.datasets")
  parse = cli_utils.make_flags_parser(
      build.Args, description="Build eleatt-jax datasets (tfds build)."
  )

  def _main(parsed: build.Args) -> None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    tfds.core.visibility.set_availables([
        tfds.core.visibility.DatasetType.TFDS_PUBLIC,
        tfds.core.visibility.DatasetType.COMMUNITY_PUBLIC,
    ])
    parsed.execute()

  app.run(_main, argv=[argv[0]] + args[1:], flags_parser=parse)


if __name__ == "__main__":
  main()
