"""N-UCLA development protocol, other direction: view 2 trains, view 1 tests.

The settings of nucla.py on the ``nucla/dev_reverse`` split (validation:
subject 9 of view 2). With ``nucla_dev.py`` (view 1 -> view 2) it makes the
two-way development protocol (``python -m benchmarks.reproduce --protocol
two_way``): the mean over both directions and several seeds. View 3 is
untouched.
"""

from train.configs import nucla


def get_config():
  """nucla_dev_reverse settings: those of nucla.py, on view 2 -> view 1."""
  config = nucla.get_config()
  config.data.name = 'nucla/dev_reverse'  # tfds builder/config
  return config
