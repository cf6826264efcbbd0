"""The store's error classes: each message names the problem and the fix."""

from __future__ import annotations

from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    ResourceError,
    UserError,
)


class StoreError(UserError, RuntimeError):
    """The store cannot be used as asked; the message names the problem and the fix."""


class NotAHilnasStoreError(StoreError):
    """The database holds tables but no hilnas marker; it was left untouched."""


class TargetNotFoundError(StoreError, NotFoundError):
    """A prediction/search target name that the store cannot resolve."""


class StoreNotFoundError(StoreError, NotFoundError):
    """A read-only open of a store file that does not exist (nothing was created)."""


class StoreFullError(StoreError, ResourceError):
    """The disk (or the database's size limit) is full; what was committed before is kept."""


class StoreDamagedError(StoreError, DataIntegrityError):
    """The database file fails SQLite's integrity check (damaged pages)."""


class StoreReadOnlyError(StoreError):
    """A write on a store opened with ``read_only=True``."""


class ExternalNameError(InvalidInputError):
    """A name for an imported device that is malformed or already means another device."""
