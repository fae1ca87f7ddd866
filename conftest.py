"""Test setup: two host devices and strict rank promotion, before jax loads."""

import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '')
    + ' --xla_force_host_platform_device_count=2'
).strip()

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: a repeat of a covered case; skipped by `make test`'
  )
