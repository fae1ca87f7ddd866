"""Parametrisations whose covered repeats run only in `make test-all`."""

import pytest


def slow_except(values, fast):
  """``values`` with those not in ``fast`` marked slow.

  A tuple value is a case of several arguments (``pytest.param(*value)``).
  """
  unknown = set(fast) - set(values)
  if unknown:
    raise ValueError(f'fast cases {sorted(map(str, unknown))} not in values')
  return [
      value
      if value in fast
      else pytest.param(
          *(value if isinstance(value, tuple) else (value,)),
          marks=pytest.mark.slow,
      )
      for value in values
  ]
