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
An error (an unknown name, a manual_dir without the files, a damaged file) is
one ``FATAL:`` line; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import sys

from eleatt_jax import cli


def main(argv: list[str] | None = None) -> None:
  """Runs ``build`` with ``--imports=eleatt_jax.datasets`` added."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] != "build":
    print(__doc__, file=sys.stderr)
    raise SystemExit(cli.USAGE)
  # pylint: disable=g-import-not-at-top
  from absl import app
  from tensorflow_datasets.scripts.cli import build, cli_utils
  # pylint: enable=g-import-not-at-top
  verbose = any(a == "--verbose" for a in argv)
  args = [a for a in argv[1:] if a != "--verbose"]
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
    try:
      parsed.execute()
    except AssertionError as err:
      # tfds asserts that a manual_dir exists, with a page of instructions.
      text = str(err)
      if "Manual directory" not in text:
        raise
      raise FileNotFoundError(
          text.split(" Create it", 1)[0].strip().rstrip(".")
          + ": give --manual_dir=DIR, the folder of your download (the"
          " dataset's page in docs/ says what it holds)."
      ) from err

  # A user error (a name, a missing manual_dir, a damaged file) is one
  # FATAL line, as from every entry point (eleatt_jax.cli).
  run = cli.guard(_main, lambda: verbose)
  app.run(run, argv=[argv[0]] + args[1:], flags_parser=parse)


if __name__ == "__main__":
  main()
