"""The README's API example runs as written."""

import pathlib
import re

import jax.numpy as jnp

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_api_example_runs():
  """Executes the first ```python block of the README and checks its shapes."""
  blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.DOTALL)
  assert blocks, 'README.md has no ```python block'
  namespace = {}
  exec(compile(blocks[0], str(README), 'exec'), namespace)  # pylint: disable=exec-used
  assert namespace['y'].shape == (8, 100, 100)
  assert namespace['attention'].shape == (8, 100, 150)
  assert namespace['y_bi'].shape == (8, 100, 200)
  assert namespace['y_bf16'].dtype == jnp.bfloat16
  assert namespace['logits'].shape == (8, 60)
  # Flax's nn.RNN on the same parameters gives the same outputs (no padding
  # in row 1, whose length is the full 100 steps).
  assert jnp.allclose(namespace['y_flax'][1], namespace['y'][1], atol=1e-5)
  # Outputs past the end of row 0 (length 60) are zero.
  assert not jnp.any(namespace['y'][0, 60:])
