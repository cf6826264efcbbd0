"""The store class, :class:`MeasurementStore`: its constructor and the parts it is made of,
one mixin per concern (engine and transactions, opening and migrations, devices,
measurements, targets and fit tables, external devices)."""

from __future__ import annotations

from pathlib import Path

from hilnas.pipeline.store.devices import _DevicesMixin
from hilnas.pipeline.store.engine import _EngineMixin, default_url, redact
from hilnas.pipeline.store.errors import StoreError
from hilnas.pipeline.store.external import _ExternalDevicesMixin
from hilnas.pipeline.store.measurements import _MeasurementsMixin
from hilnas.pipeline.store.opening import _OpeningMixin
from hilnas.pipeline.store.targets import _TargetsMixin
from sqlalchemy.engine import make_url


class MeasurementStore(
    _EngineMixin,
    _OpeningMixin,
    _DevicesMixin,
    _MeasurementsMixin,
    _TargetsMixin,
    _ExternalDevicesMixin,
):
    """Devices and measurements in SQLite or PostgreSQL (see :mod:`hilnas.pipeline.store`).

    ``url`` is an SQLAlchemy URL; ``None`` means ``HILNAS_DATABASE_URL`` or the default SQLite
    file. ``postgresql://`` is read as ``postgresql+psycopg://``. Raises :class:`StoreError`
    (and its subclass :class:`NotAHilnasStoreError`) with the fix in the message.
    """

    def __init__(
        self, url: str | None = None, *, echo: bool = False, read_only: bool = False
    ) -> None:
        self.read_only = read_only
        self.path: Path | None = None
        raw = url if url is not None and str(url).strip() else default_url(create=not read_only)
        try:
            parsed = make_url(str(raw))
        except Exception as exc:
            raise StoreError(
                f"{raw!r} is not a database URL ({exc}); use e.g. sqlite:////path/to/hilnas.db or "
                "postgresql+psycopg://user:password@host/dbname"
            ) from exc
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._url = parsed
        self.display_url = redact(parsed)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database {self.display_url}: hilnas stores live in SQLite or "
                "PostgreSQL (postgresql+psycopg://...)"
            )
        self._has_attempts = True
        self._has_quality = True  # False only for a read-only open of a store before schema 3
        self._engine = self._make_engine(parsed, echo)
        try:
            self._initialise()
        except BaseException:
            self._engine.dispose()
            raise
