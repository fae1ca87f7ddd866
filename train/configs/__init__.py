"""Experiment configs: one file per experiment, each `get_config()`.

`default.py` defines every field (with a comment); the others change values
only. `_skeleton.py` holds the settings the skeleton experiments share.
"""
