"""The project's settings that files other than setup.cfg need.

The repository's address is written once, in setup.cfg's ``project_urls``
(``Source``); the docs' repository button, the notebooks' Colab badges and
their install cells are made from it.
"""

from __future__ import annotations

import configparser
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / 'setup.cfg'


def project_urls(setup_cfg: pathlib.Path = SETUP_CFG) -> dict[str, str]:
  """setup.cfg's ``[metadata] project_urls`` as ``{label: url}``."""
  config = configparser.ConfigParser()
  if not config.read(setup_cfg):
    raise FileNotFoundError(f'{setup_cfg}: not found')
  urls = {}
  for line in config['metadata'].get('project_urls', '').splitlines():
    if line.strip():
      label, _, url = line.partition('=')
      urls[label.strip()] = url.strip()
  return urls


def repository_url(setup_cfg: pathlib.Path = SETUP_CFG) -> str:
  """The repository, e.g. ``https://github.com/OWNER/NAME`` (no slash at the
  end): setup.cfg's ``project_urls`` ``Source``."""
  urls = project_urls(setup_cfg)
  if 'Source' not in urls:
    raise KeyError(
        f'{setup_cfg}: [metadata] project_urls has no "Source = <url>" line'
        f' (found: {sorted(urls)})'
    )
  url = urls['Source'].rstrip('/')
  if not url.startswith('https://github.com/') or url.count('/') != 4:
    raise ValueError(
        f'{setup_cfg}: project_urls Source must be '
        'https://github.com/<owner>/<name> (Colab opens notebooks from '
        f'GitHub), got {url!r}'
    )
  return url
