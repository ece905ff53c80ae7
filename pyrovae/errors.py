"""Error types that pyrovae raises for bad input, so callers (and the CLI) can tell
a user's mistake from a bug and print one clear line instead of a traceback."""

from __future__ import annotations


class PyrovaeError(Exception):
    """Base class of every error pyrovae raises on purpose."""


class SpecError(PyrovaeError, ValueError):
    """A spec key has a bad value: names the key path, the value and the valid choices."""

    def __init__(self, key: str, message: str, *, value=None, choices=None):
        self.key, self.value, self.choices = key, value, choices
        text = f"{key}: {message}" if key else message
        if choices is not None:
            text += f" (valid choices: {', '.join(map(str, choices)) or 'none'})"
        super().__init__(text)


class DataError(PyrovaeError, ValueError):
    """Data that cannot be loaded, or that the chosen likelihood cannot score."""


class TrainingDiverged(PyrovaeError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class RunDirError(PyrovaeError, FileExistsError):
    """A run directory is missing what is needed, or would be overwritten."""
