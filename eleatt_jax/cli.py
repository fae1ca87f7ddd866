"""How every command line of the project ends: one line for a user's error.

Every entry point (``python -m train.main``, ``train.eval``, ``train.export``,
``train.stream``, ``train.attention``, ``python -m eleatt_jax.datasets`` and
the benchmarks) runs its ``main`` through `run_absl` (absl programs) or
`run_plain` (argparse ones), so that all of them end alike:

* an error the user can fix (a flag, a config value, a path, a split, a data
  file) is one ``FATAL: <message>`` line on stderr and exit status 2;
* any other error (a workdir in use, a full disk, a non-finite loss) is one
  ``FATAL:`` line and exit status 1; one of no known kind says its type and
  how to see the traceback;
* Ctrl-C is one line and exit status 130;
* ``--verbose`` prints the traceback as well.

Cleanup (a lock, a half-made folder) belongs to the code that made it (its
``with`` / ``finally``), which runs before the line is printed.

>>> exit_status(ValueError('config.batch_size must be >= 1'))
2
>>> exit_status(RuntimeError('in use'))
1
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

USAGE = 2
FAILURE = 1
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

# Errors that mean "what you asked for is not possible as given": a value, a
# key, a path or a file of the user's.
_USAGE_ERRORS = (ValueError, LookupError, FileNotFoundError, NotADirectoryError)
# Their messages name the file, key or value; those of other types may not.
_OWN_MESSAGE = _USAGE_ERRORS + (OSError, RuntimeError, FloatingPointError)


class UsageError(ValueError):
  """A command line that cannot be run as given (exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors are a `UsageError` (under
  `run_plain`: one ``FATAL:`` line, not argparse's usage text)."""

  def error(self, message):  # pytype: disable=signature-mismatch
    raise UsageError(f'{message} (--help lists the options)')


def exit_status(err: BaseException) -> int:
  """2 for a usage error, 1 for another failure (or ``err.exit_status``)."""
  status = getattr(err, 'exit_status', None)
  if status is not None:
    return int(status)
  if isinstance(err, _USAGE_ERRORS) or _is_absl_usage(err):
    return USAGE
  return FAILURE


def _is_absl_usage(err: BaseException) -> bool:
  names = {c.__module__ + '.' + c.__name__ for c in type(err).__mro__}
  return bool(names & {'absl.app.UsageError', 'absl.flags._exceptions.Error'})


def message(err: BaseException) -> str:
  """The line printed after ``FATAL:``."""
  if isinstance(err, KeyError) and err.args:
    text = str(err.args[0])  # str(KeyError) quotes its message
  else:
    text = str(err)
  if isinstance(err, _OWN_MESSAGE) or _is_absl_usage(err):
    return text or type(err).__name__
  # Not a kind we raise for a user: its type says more than its text.
  first = text.splitlines()[0][:300] if text else ''
  return (
      f'{type(err).__name__}{": " + first if first else ""} '
      '(an unexpected error: run again with --verbose for the traceback)'
  )


def fail(err: BaseException, verbose: bool, stream=None) -> int:
  """Prints `err` as one ``FATAL:`` line (and the traceback if `verbose`);
  returns its exit status."""
  stream = stream or sys.stderr
  if verbose:
    traceback.print_exception(err, file=stream)
  print(f'FATAL: {message(err)}', file=stream, flush=True)
  return exit_status(err)


def guard(
    main: Callable[..., Any],
    verbose: Callable[[], bool],
    interrupted: str | Callable[[], str] = 'Interrupted (SIGINT).',
) -> Callable[..., Any]:
  """`main`, ending any error with `fail` and Ctrl-C with `interrupted`.

  Args:
    main: The program's main function.
    verbose: ``() -> bool``: print tracebacks (asked when an error comes).
    interrupted: The line printed on Ctrl-C (what is kept, how to go on), or
      a function that returns it.
  """

  def guarded(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except SystemExit:
      raise
    except KeyboardInterrupt as err:
      if verbose():
        traceback.print_exception(err)
      line = interrupted() if callable(interrupted) else interrupted
      print(line, file=sys.stderr, flush=True)
      sys.exit(INTERRUPTED)
    except Exception as err:  # pylint: disable=broad-except
      sys.exit(fail(err, verbose()))

  return guarded


def _verbose_in(argv: Sequence[str]) -> bool:
  return any(
      a in ('--verbose', '--verbose=true', '--verbose=True') for a in argv
  )


def run_plain(
    main: Callable[[list[str]], Any],
    argv: Sequence[str] | None = None,
    interrupted: str | Callable[[], str] = 'Interrupted (SIGINT).',
) -> None:
  """Runs ``main(args)`` of an argparse program (``--verbose`` removed from
  ``args``: it is ours) and exits with its status."""
  argv = list(sys.argv if argv is None else argv)
  args = [a for a in argv[1:] if not _verbose_in([a])]
  guard(main, lambda: _verbose_in(argv), interrupted)(args)
  sys.exit(0)


def run_absl(
    main: Callable[[list[str]], Any],
    flags_parser: Callable[[list[str]], list[str]] | None = None,
    interrupted: str | Callable[[], str] = 'Interrupted (SIGINT).',
    argv: Sequence[str] | None = None,
) -> None:
  """``absl.app.run(main)``, ending as the module docstring says.

  A flag error (unknown, missing or malformed, or one `flags_parser` raises
  for) is one ``FATAL:`` line and exit status 2, not absl's usage text.
  """
  # pylint: disable=g-import-not-at-top
  from absl import app
  from absl import flags
  # pylint: enable=g-import-not-at-top

  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_boolean(
        'verbose', False, 'Print the traceback of an error too.'
    )
  parse = flags_parser or flags.FLAGS
  raw = list(sys.argv if argv is None else argv)

  def parse_or_fail(args: list[str]) -> list[str]:
    try:
      return parse(args)
    except SystemExit:
      raise
    except Exception as err:  # pylint: disable=broad-except
      line = message(err).splitlines()[0]
      if isinstance(err, flags.Error):
        line += ' (--helpshort lists the flags)'
      print(f'FATAL: {line}', file=sys.stderr, flush=True)
      if _verbose_in(raw):
        traceback.print_exception(err)
      sys.exit(USAGE if exit_status(err) == USAGE else FAILURE)

  def verbose() -> bool:
    try:
      return bool(flags.FLAGS.verbose)
    except flags.Error:
      return _verbose_in(raw)

  app.run(
      guard(main, verbose, interrupted),
      argv=raw,
      flags_parser=parse_or_fail,
  )
