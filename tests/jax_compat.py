"""What the tests need from jax across the versions that packaging allows.

The oldest tested versions are pinned in `requirements-min.txt` and run by
`make test-min`; this module bridges the few APIs that moved since then.
"""

import jax

# `jax.enable_x64(True)` (a context manager at the top level) is newer than
# the oldest jax we test; before it, the same switch was
# `jax.experimental.enable_x64()`, which newer jax no longer has.
if hasattr(jax, 'enable_x64'):
  enable_x64 = jax.enable_x64
else:
  from jax.experimental import enable_x64  # noqa: F401

# The error that a failed runtime check (`jax.debug.callback` raising under
# `jit`) surfaces as; older jax only had jaxlib's XlaRuntimeError.
if hasattr(jax.errors, 'JaxRuntimeError'):
  JaxRuntimeError = jax.errors.JaxRuntimeError
else:
  from jaxlib.xla_extension import (  # noqa: F401
      XlaRuntimeError as JaxRuntimeError,
  )
