"""A problem found in the input: reported, never raised."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ValidationProblem:
    """One invalid object (or unreadable document) and why.

    Rendered as ``file[:line]: subject: field: message``, for example
    ``examples/gw.yaml: Gateway default/gw: spec.listeners[0].port: 70000 is greater than
    the maximum of 65535``. The subject names the object (``Kind namespace/name``) or,
    when it has no usable name, its document (``Gateway in document 2``).
    """

    file: str
    subject: str
    message: str
    field: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return ": ".join(part for part in (where, self.subject, self.field, self.message) if part)


@dataclass(frozen=True, order=True)
class IgnoredObject:
    """A well-formed object of a kind we do not read (someone else's API, a Deployment):
    not an error, but named in a warning rather than dropped without a word."""

    file: str
    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.subject}: {self.reason}; ignored"
