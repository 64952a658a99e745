"""Helpers of the bad-input sweep (``tests/test_bad_inputs*.py``): one way to say "this call
must fail with this documented error, name where, and leave no output behind"."""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

#: hypothesis settings of every property in the sweep: few, derandomized examples, no
#: example database (nothing written to the repository), no deadline (first calls import).
SWEEP = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large])


def listing(folder: str | os.PathLike) -> dict[str, bytes | None]:
    """Every path below ``folder`` with the bytes of each file (None for folders)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (TimeoutError) if the body runs longer than ``seconds``: huge counts must be refused, not looped over."""
    def _alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    outer = signal.alarm(seconds)  # seconds left on an enclosing limit, re-armed afterwards
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.alarm(outer)


def expect_error(fn: Callable[[], object], error: type[BaseException] | tuple[type[BaseException], ...],
                 *where: str, folder: str | os.PathLike | None = None, seconds: int = 60) -> BaseException:
    """``fn()`` raises ``error`` whose message contains every string of ``where`` (the file,
    record, row, line, index...), within ``seconds``, and ``folder`` is byte-for-byte as before."""
    before = listing(folder) if folder is not None else None
    with time_limit(seconds), pytest.raises(error) as info:
        fn()
    message = str(info.value)
    for w in where:
        assert w in message, f"{w!r} not in the message: {message}"
    if folder is not None:
        assert listing(folder) == before, "the failed call left output behind or changed files"
    return info.value


def cli_error(main: Callable[[list[str]], None], argv: list[str], *where: str,
              folder: str | os.PathLike | None = None) -> str:
    """``dit3d ARGV`` exits with a one-line error (no traceback) naming ``where``; returns the message."""
    err = expect_error(lambda: main(argv), SystemExit, *where, folder=folder)
    assert err.code not in (0, None), f"exit status {err.code!r}"
    return str(err)
