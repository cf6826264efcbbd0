"""The one exception root of hilnas.

Every error hilnas raises on purpose derives from :class:`HilnasError`. The subclasses of
:class:`UserError` mean "the input or the environment must change": the command line prints
their message as one line (which names the problem and the fix) and exits with code 2. Any
other exception, a builtin ``ValueError`` from a library included, is a bug: the command line
says so, writes the traceback to a log file and names it.

It lives in the lowest layer (``devices``) so that every layer above can raise it; it imports
nothing.

Promises:
- a :class:`UserError` is raised *before* anything is written to the store when the problem
  can be known beforehand (a missing dependency, an out-of-range size, a malformed name);
- its message is one line: what is wrong, then what to do about it.
"""

from __future__ import annotations


class HilnasError(Exception):
    """Root of every error hilnas raises on purpose."""


class UserError(HilnasError):
    """The user's input or environment must change; the message names the fix (exit code 2)."""


class InvalidInputError(UserError, ValueError):
    """A value, string, file or option that is malformed or out of its sensible range."""


class NotFoundError(UserError, LookupError):
    """A named thing (device, space, target, saved search, file) that does not exist."""


class PreconditionError(UserError):
    """Something the command needs is missing: a package extra, hardware, a permission."""


class ResourceError(UserError):
    """The machine ran out of something (disk space, memory) or a size would exhaust it."""


class DataIntegrityError(UserError):
    """Stored data (a database, a cache entry, a saved search) is damaged or not from hilnas."""


def check_number(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    integer: bool = True,
    fix: str | None = None,
) -> int | float:
    """Return ``value`` if it is a finite number in ``[low, high]``, else raise InvalidInputError.

    ``bool`` is refused (``True`` is not a count). ``fix`` is appended to the message; by default
    it states the sensible range. Use it for every size a user passes, before any work starts.
    """
    kind = "an integer" if integer else "a number"
    hint = fix or f"pass {kind} from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be {kind}, got {value!r}; {hint}")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise InvalidInputError(f"{name} must be {kind}, got {value!r}; {hint}")
        value = int(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{name} must be finite, got {value!r}; {hint}")
    if not low <= value <= high:
        raise InvalidInputError(f"{name}={value!r} is out of range; {hint}")
    return value


__all__ = [
    "check_number",
    "DataIntegrityError",
    "HilnasError",
    "InvalidInputError",
    "NotFoundError",
    "PreconditionError",
    "ResourceError",
    "UserError",
]
