"""Exceptions raised by egm.

Every error says what was wrong and how to fix it.  They subclass the builtin
exception a user would naturally catch (``ValueError`` for bad values,
``FileNotFoundError`` for missing data, ``FloatingPointError`` for divergence),
so ``except ValueError`` keeps working for code that does not know egm.
"""

from __future__ import annotations


class EgmError(Exception):
    """Base class of every error egm raises on purpose."""


class DataError(EgmError, ValueError):
    """Input data with the wrong shape, dtype, range or content (NaN, non-binary, ...)."""


class DatasetNotFoundError(EgmError, FileNotFoundError):
    """A dataset could be found neither through tensorflow-datasets nor in a local folder."""


class CorruptFileError(DataError):
    """A data or checkpoint file exists but cannot be parsed (truncated, wrong magic, ...)."""


class ConfigError(EgmError, ValueError):
    """A configuration value that is out of range or of the wrong kind."""


class DivergenceError(EgmError, FloatingPointError):
    """Training produced NaN/inf parameters or metrics."""
