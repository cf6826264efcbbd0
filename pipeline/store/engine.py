"""Engines and URLs: the default store URL, password redaction, the read-only SQLite
connector, disk-full detection, and the engine and transactions of a store
(:class:`_EngineMixin`)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.home import HomeError, home_dir
from hilnas.pipeline.store.errors import (
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreReadOnlyError,
)
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.store.measurement_store import MeasurementStore

#: The package's logger: records keep the name ``hilnas.pipeline.store`` they had before the
#: module became a package (``caplog``/logging configuration of that name still applies).
log = logging.getLogger(__package__)

DATABASE_URL_ENV = "HILNAS_DATABASE_URL"
DEFAULT_DB_NAME = "hilnas.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_url(create: bool = True) -> str:
    """``HILNAS_DATABASE_URL`` if set, else the SQLite file under the home directory.

    ``create=False`` (read-only commands) neither creates nor write-tests the home directory.
    """
    env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if env:
        return env
    try:
        home = home_dir(create=create)
    except HomeError as exc:
        raise StoreError(str(exc)) from exc
    return f"sqlite:///{home / DEFAULT_DB_NAME}"


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def _is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL ("database or disk is full") or a server's "no space left on device"."""
    low = str(getattr(exc, "orig", None) or exc).lower()
    return "database or disk is full" in low or "no space left" in low or "disk full" in low


def _read_only_connector(path: Path) -> Any:
    """A DB-API connect function that opens ``path`` read-only and never creates a file.

    ``mode=ro`` first; when SQLite cannot open it so (a WAL-mode file in a directory where it
    may not create the ``-shm`` index, e.g. an archived store on a read-only mount), the file
    is opened ``immutable=1``: nothing can write a directory that read-only, so no other
    process changes the file under us.
    """
    from urllib.parse import quote

    base = f"file:{quote(str(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        conn = sqlite3.connect(base, uri=True, timeout=timeout, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            low = str(exc).lower()
            if "unable to open" not in low and "readonly" not in low:
                raise
        return sqlite3.connect(
            base + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False
        )

    return connect


def redact(url: str | URL) -> str:
    """A URL safe to print (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _fix_hint() -> str:
    return (
        f"point {DATABASE_URL_ENV} (or --db) at a hilnas store or an empty database, or unset it "
        f"to use the default sqlite:///<HILNAS_HOME>/{DEFAULT_DB_NAME}"
    )


class _EngineMixin:
    """The engine of a store and its transactions (``_write``: ``BEGIN IMMEDIATE`` on
    SQLite, disk-full errors translated; ``_read``), closing and the context manager.
    ``MeasurementStore.__init__`` sets the attributes."""

    read_only: bool
    path: Path | None
    display_url: str
    dialect: str
    _engine: Engine

    # ----- engine -----------------------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        """True for an SQLite in-memory database: everything is lost when it is closed."""
        return self.dialect == "sqlite" and self.path is None

    def require_persistent(self, command: str = "this command") -> None:
        """Refuse to measure into a store that is thrown away on exit (``sqlite://``)."""
        if self.in_memory:
            raise InvalidInputError(
                f"{self.display_url} is an in-memory database: {command} would store its "
                "results there and lose them on exit; point HILNAS_DATABASE_URL (or --db) at a "
                "file, e.g. sqlite:////path/to/hilnas.db, or unset it to use the default store"
            )

    def _make_engine(self, url: URL, echo: bool) -> Engine:
        if self.dialect == "sqlite":
            return self._make_sqlite_engine(url, echo)
        try:
            kwargs: dict[str, Any] = {}
            if self.read_only:
                kwargs["execution_options"] = {"postgresql_readonly": True}
            return create_engine(url, echo=echo, pool_pre_ping=True, future=True, **kwargs)
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the PostgreSQL driver is not installed ({exc.name}); "
                "install it with `pip install 'hilnas[postgres]'`"
            ) from exc

    def _make_sqlite_engine(self, url: URL, echo: bool) -> Engine:
        database = url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        kwargs: dict[str, Any] = {"echo": echo}
        if memory:
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = Path.cwd() / path
            url = url.set(database=str(path))
            self.path = path
            if self.read_only:
                if not path.is_file():
                    what = "is a directory, not a store" if path.is_dir() else "does not exist"
                    raise StoreNotFoundError(
                        f"no store at {path} yet ({what}); run `hilnas profile --device cpu` "
                        f"first, or point {DATABASE_URL_ENV} (or --db) at an existing store"
                    )
                kwargs["creator"] = _read_only_connector(path)
                url = make_url("sqlite://")  # the creator opens the file
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {}
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the directory of the store {path} "
                        f"({exc.strerror or exc}); set HILNAS_HOME (or HILNAS_DATABASE_URL) to a "
                        "writable location"
                    ) from exc
                if path.is_dir():
                    raise StoreError(f"the store path {path} is a directory; {_fix_hint()}")
                kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url, **kwargs)
        read_only = self.read_only

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
            # We issue BEGIN ourselves (below) so that writers can take the lock up front.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not read_only:
                cur.execute("PRAGMA foreign_keys=ON")
                # In WAL mode NORMAL keeps every commit across a crash of the process (SIGKILL
                # included); only a power loss may drop the last commits, never corrupt the file.
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - trivial
            write = conn.get_execution_options().get("hilnas_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite): commit on success.

        A full disk (SQLITE_FULL, PostgreSQL's "No space left on device") becomes
        :class:`StoreFullError`; the transaction is rolled back and earlier commits are kept.
        """
        if self.read_only:
            raise StoreReadOnlyError(
                f"the store {self.display_url} was opened read-only; this is a bug of the "
                "command that tried to write (report it), or open the store without read_only"
            )
        try:
            with self._engine.connect() as conn:
                conn.execution_options(hilnas_write=True)
                with conn.begin():
                    yield conn
        except sa_exc.OperationalError as exc:
            if _is_disk_full(exc):
                raise self._full_error(exc) from exc
            raise

    def _full_error(self, exc: BaseException) -> StoreFullError:
        where = str(self.path) if self.path is not None else self.display_url
        return StoreFullError(
            f"the store {where} cannot grow: {_first_line(exc)} (measurements committed before "
            "are kept); free disk space, then rerun the same command to resume"
        )

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release pooled connections (the object must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MeasurementStore({self.display_url!r})"

    @property
    def url(self) -> str:
        """The URL with the password hidden."""
        return self.display_url
