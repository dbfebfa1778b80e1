"""Errors and warnings with stable exit codes.

Kept free of TensorFlow imports so pytest can resolve the warning classes named in
``filterwarnings`` and the CLI can report bad input without paying for a TF import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Exit codes shared by the CLI (and documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # a regression, or an accuracy check that failed
EXIT_BAD_INPUT = 2  # unreadable file, unknown name, bad number
EXIT_MISSING_BASELINE = 3
EXIT_DATA_UNAVAILABLE = 6  # dataset not cached and not downloadable (pytest itself uses 0-5)
EXIT_INTERRUPTED = 130


class Tf2benchError(Exception):
    """Base class: every error tf2bench raises on purpose carries an exit code."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(Tf2benchError, ValueError):
    """A name, number or file the user supplied is not usable."""


class UnknownNameError(BadInputError, KeyError):
    """A name that is not in a registry; the message lists the valid ones."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataUnavailableError(Tf2benchError):
    """The requested dataset cannot be had (not cached, no network, corrupt cache)."""

    exit_code = EXIT_DATA_UNAVAILABLE


class DivergedError(Tf2benchError, FloatingPointError):
    """The training loss became NaN or infinite; the step range says where."""

    exit_code = EXIT_FAILED


class DataSourceWarning(UserWarning):
    """The dataset actually used differs from the real full one (fallback or subset)."""


class NoisyMeasurementWarning(UserWarning):
    """A figure's rounds vary more than the noise threshold (CV)."""


def check_positive_int(name: str, value: object, *, parse: bool = True) -> int:
    """Return ``value`` as an int > 0, or raise BadInputError naming the option (the one such check).

    ``parse``: accept text such as ``"5"`` (command-line options); without it only a real int passes (a config
    field typed ``int``).
    """
    if isinstance(value, bool) or (not parse and not isinstance(value, int)):
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    try:
        as_int = int(value) if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}") from None
    if as_int <= 0:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    return as_int


class UnsupportedError(Tf2benchError):
    """A training loop cannot run on this machine (e.g. a precision the device lacks); the suite skips it."""

    exit_code = EXIT_FAILED


def reason(exc: BaseException, limit: int = 300) -> str:
    """One line that says why, out of TensorFlow's "in user code:" and Keras's "Exception encountered when
    calling ..." wrappers (Keras marks the real message in bold)."""
    text = str(exc)
    bold = re.findall(r"\x1b\[1m(.*?)\x1b\[0m", text, flags=re.S)
    if bold:
        return " ".join(bold[-1].split())[:limit]
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    noise = ("in user code", "File ", "Arguments received", "•", "Exception encountered when calling", "return ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    if not useful:
        return (lines[0] if lines else type(exc).__name__)[:limit]
    return (useful[-1] if lines[0].startswith("in user code") else useful[0])[:limit]
