"""Errors raised while reading landing files."""

from __future__ import annotations


class LandingFileError(ValueError):
    """A landing file that cannot be parsed. The file stays in landing; the run fails.

    ``path`` is the file (relative to the data root when known), ``line`` the 1-based line
    in the file (header = line 1 for CSV; 1-based row for Parquet), ``column`` the header as
    written in the file (or the canonical field), ``expected`` what a valid cell looks like.
    """

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        line: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        value: str | None = None,
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.column = column
        self.expected = expected
        self.value = value
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        msg = ", ".join(where) + f": {problem}"
        if value is not None:
            msg += f" (found {value!r})"
        if expected:
            msg += f"; expected {expected}"
        msg += ". The file was left in landing; fix or replace it and rerun."
        super().__init__(msg)
