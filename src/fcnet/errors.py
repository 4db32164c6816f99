"""Exceptions that fcnet raises for bad data, missing files and diverged training.

Every error the command line reports as a one-line message (exit code 1) is a
subclass of :class:`FcnetError`; anything else is a bug.
"""

__all__ = ["FcnetError", "DataError", "DataNotFoundError", "ChecksumError", "DivergenceError", "RunInterrupted"]


class FcnetError(Exception):
    """Base class of the errors fcnet reports to the user in one line."""


class DataError(FcnetError):
    """A data or model file is malformed, truncated or inconsistent."""


class DataNotFoundError(DataError):
    """A data set is on none of the searched paths and could not be downloaded."""


class ChecksumError(DataError):
    """A data file does not match its published checksum."""


class DivergenceError(FcnetError):
    """Training produced a NaN or infinite loss."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fcnet.run.train_run`, after what could be saved was saved; the message says what."""
