"""The training program of eleatt-jax (run from the repository's root).

  python -m train.main --config=train/configs/smnist.py --workdir=runs/demo
  python -m train.eval --workdir=runs/demo
  python -m train.attention --workdir=runs/demo --index=0

`train.train.train_and_evaluate(config, workdir)` is the Python entry point.
"""
