"""Errors that reach the user as one line and exit code 2 (never a traceback)."""
from __future__ import annotations


class GradcheckError(Exception):
    """Base of every error the CLI turns into one line on stderr and exit code 2."""

    exit_code = 2


class CaseError(GradcheckError):
    """Bad input in a case file: names the file, the field's path and, for YAML, the line."""

    def __init__(self, file: str, field: str, message: str, line: int | None = None) -> None:
        self.file, self.field, self.message, self.line = str(file), field, message, line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ShapeError(GradcheckError):
    """A layer cannot take the shape it is given; ``field`` is relative to the layer."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class UserCodeError(GradcheckError):
    """The user's own layer code failed or returned something unusable."""
