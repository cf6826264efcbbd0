"""Opening a store (:class:`_OpeningMixin`): the integrity check, the hilnas marker and
schema version, the migrations of older schemas, creating a new store, and the open errors
translated into :class:`~hilnas.pipeline.store.StoreError` with the fix."""

from __future__ import annotations

from typing import Any

from hilnas.pipeline.store.engine import (
    DATABASE_URL_ENV,
    SQLITE_BUSY_TIMEOUT_MS,
    _first_line,
    _fix_hint,
    _is_disk_full,
    log,
)
from hilnas.pipeline.store.errors import (
    NotAHilnasStoreError,
    StoreDamagedError,
    StoreError,
    StoreNotFoundError,
)
from hilnas.pipeline.store.rows import _now, hilnas_version
from hilnas.pipeline.store.schema import (
    _V1_TABLES,
    APP_MARKER,
    HILNAS_TABLES,
    QUALITY_COLUMNS,
    SCHEMA_VERSION,
    attempts_table,
    measurements_table,
    meta_table,
    metadata,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, inspect, select, text, update

#: Files up to this size get ``PRAGMA quick_check`` on every open (~4 ms per MB).
QUICK_CHECK_MAX_BYTES = 32 * 1024 * 1024
_PG_INIT_LOCK = 0x68696C6E  # "hiln": serialises concurrent first opens on PostgreSQL


class _OpeningMixin:
    """Opening a store: checks, creation and migrations (``_initialise``), the meta table."""

    # ----- opening ----------------------------------------------------------------------
    def _initialise(self) -> None:
        try:
            if self.dialect == "sqlite" and self.path is not None:
                self._check_integrity()
            if self.read_only:
                self._open_read_only()
            else:
                self._open_for_writing()
        except StoreError:
            raise
        except sa_exc.DatabaseError as exc:
            raise self._translate_open_error(exc) from exc
        except sa_exc.NoSuchModuleError as exc:  # pragma: no cover - exotic URLs
            raise StoreError(f"no SQLAlchemy driver for {self.display_url}: {exc}") from exc
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the database driver for {self.display_url} is not installed ({exc.name}); "
                "install it with `pip install 'hilnas[postgres]'`"
            ) from exc
        if self.dialect == "sqlite" and self.path is not None and not self.read_only:
            # Persistent per file; set only once we know the file is a hilnas store.
            try:
                raw = self._engine.raw_connection()
                try:
                    cur = raw.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")  # outside any transaction
                    cur.close()
                finally:
                    raw.close()
            except Exception as exc:  # pragma: no cover - e.g. network filesystems
                log.warning("could not switch %s to WAL mode: %s", self.display_url, exc)

    def _open_for_writing(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_INIT_LOCK})
            tables = set(inspect(conn).get_table_names())
            if "hilnas_meta" not in tables:
                if tables:
                    shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
                    raise NotAHilnasStoreError(
                        f"{self.display_url} is not a hilnas store: it has tables ({shown}) "
                        "but no hilnas_meta table. hilnas did not modify it; " + _fix_hint()
                    )
                metadata.create_all(conn)
                conn.execute(
                    insert(meta_table),
                    [
                        {"key": "app", "value": APP_MARKER},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_at", "value": _now().isoformat()},
                        {"key": "created_by", "value": f"hilnas {hilnas_version()}"},
                    ],
                )
                log.info("created a hilnas store at %s", self.display_url)
            else:
                self._check_meta(conn, tables)

    def _open_read_only(self) -> None:
        with self._read() as conn:
            tables = set(inspect(conn).get_table_names())
            if "hilnas_meta" not in tables:
                if not tables:
                    raise StoreNotFoundError(
                        f"no store at {self.display_url} yet (the database is empty); run "
                        "`hilnas profile --device cpu` first"
                    )
                raise NotAHilnasStoreError(
                    f"{self.display_url} is not a hilnas store: it has tables but no hilnas_meta "
                    "table. hilnas did not modify it; " + _fix_hint()
                )
            self._check_meta(conn, tables)

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` when a file store of up to :data:`QUICK_CHECK_MAX_BYTES` is
        opened (about 30-40 ms for 10,000 measurements, 8.5 MB, on a 2-core machine); larger
        files are checked by :meth:`check_integrity` on request.

        Damaged pages make SQLite return garbage or fail half-way through a command; refusing
        them on open, before anything is written, keeps the damage from spreading.
        """
        assert self.path is not None
        try:
            size = self.path.stat().st_size
        except OSError:
            return  # a new store: nothing to check
        if size == 0:
            return
        if size > QUICK_CHECK_MAX_BYTES:
            log.debug("skipping quick_check of %s (%d bytes) on open", self.path, size)
            return
        problems = self._integrity_problems("quick_check")
        if problems:
            raise self._damaged_error("; ".join(problems)[:300])

    def _integrity_problems(self, pragma: str) -> list[str]:
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA {pragma}(5)").all()
        return [str(r[0]) for r in rows if str(r[0]).lower() != "ok"]

    def check_integrity(self, *, full: bool = False) -> None:
        """Check the whole SQLite file now, whatever its size (``full``: ``integrity_check``,
        which also verifies indexes, about 3x slower than ``quick_check``); raises
        :class:`StoreDamagedError` naming the file and how to recover. No-op on PostgreSQL and
        in-memory stores. Meant for a ``hilnas doctor``-like command."""
        if self.dialect != "sqlite" or self.path is None:
            return
        try:
            problems = self._integrity_problems("integrity_check" if full else "quick_check")
        except sa_exc.DatabaseError as exc:
            raise self._damaged_error(_first_line(exc)) from exc
        if problems:
            raise self._damaged_error("; ".join(problems)[:300])

    def _damaged_error(self, detail: str) -> StoreDamagedError:
        path = self.path or self.display_url
        return StoreDamagedError(
            f"the store {path} is damaged (SQLite integrity check: {detail}); hilnas did not "
            f"modify it. Restore it from a backup, or recover what is readable with "
            f"`sqlite3 {path} .recover | sqlite3 recovered.db` and use that file "
            f"({DATABASE_URL_ENV}=sqlite:////abs/path/recovered.db)"
        )

    def _check_meta(self, conn: Any, tables: set[str]) -> None:
        meta = {k: v for k, v in conn.execute(select(meta_table.c.key, meta_table.c.value))}
        if meta.get("app") != APP_MARKER:
            raise NotAHilnasStoreError(
                f"{self.display_url} is not a hilnas store: its hilnas_meta table has no "
                f"app={APP_MARKER!r} marker. hilnas did not modify it; " + _fix_hint()
            )
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise NotAHilnasStoreError(
                f"{self.display_url} has a damaged hilnas_meta table (schema_version "
                f"{meta.get('schema_version')!r}). hilnas did not modify it; " + _fix_hint()
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.display_url} was written by a newer hilnas (store schema {version}, this "
                f"hilnas {hilnas_version()} knows up to {SCHEMA_VERSION}); upgrade hilnas with "
                "`pip install -U hilnas`"
            )
        needed = HILNAS_TABLES
        if version < SCHEMA_VERSION:
            if self.read_only:  # read as it is; the next writing command migrates it
                needed = _V1_TABLES
                self._has_attempts = "measurement_attempts" in tables
                if "measurements" in tables:
                    have = {c["name"] for c in inspect(conn).get_columns("measurements")}
                    self._has_quality = all(c in have for c in QUALITY_COLUMNS)
            else:
                self._migrate(conn, version, tables)
                tables = set(inspect(conn).get_table_names())
        missing = [t for t in needed if t not in tables]
        if missing:
            raise StoreError(
                f"{self.display_url} is a damaged hilnas store (missing tables: "
                f"{', '.join(missing)}); restore it from a backup or " + _fix_hint()
            )

    def _migrate(self, conn: Any, from_version: int, tables: set[str]) -> None:
        """Bring a store of an older schema up to :data:`SCHEMA_VERSION` in the open
        transaction (all or nothing); every existing row is kept as it is."""
        if from_version < 1:
            raise StoreError(
                f"{self.display_url} uses store schema {from_version}, which this hilnas cannot "
                f"migrate to {SCHEMA_VERSION}; restore it from a backup or " + _fix_hint()
            )
        if from_version < 2 and "measurement_attempts" not in tables:
            attempts_table.create(conn)
        if from_version < 3:
            # nullable columns: every existing row is kept and reads as "not assessed"
            have = {c["name"] for c in inspect(conn).get_columns("measurements")}
            for name in QUALITY_COLUMNS:
                if name in have:
                    continue
                column = measurements_table.c[name]
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE measurements ADD COLUMN {name} {kind}"))
        conn.execute(
            update(meta_table)
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
        log.info(
            "migrated the store %s from schema %d to %d",
            self.display_url,
            from_version,
            SCHEMA_VERSION,
        )

    def _translate_open_error(self, exc: sa_exc.DatabaseError) -> StoreError:
        msg = str(getattr(exc, "orig", exc)) or str(exc)
        if _is_disk_full(exc):
            return self._full_error(exc)
        if self.dialect == "sqlite":
            low = msg.lower()
            if "malformed" in low and self.path is not None:
                return self._damaged_error(msg)
            if "not a database" in low or "malformed" in low or "encrypted" in low:
                return NotAHilnasStoreError(
                    f"{self.display_url} is not a hilnas store (not an SQLite database: {msg}). "
                    "hilnas did not modify it; " + _fix_hint()
                )
            if "readonly" in low or "read-only" in low or "unable to open" in low:
                if self.read_only:
                    return StoreError(
                        f"cannot read the store {self.display_url} ({msg}); make the file "
                        "readable, or copy it to a writable directory and point "
                        f"{DATABASE_URL_ENV} at the copy"
                    )
                return StoreError(
                    f"cannot write the store {self.display_url} ({msg}); make the file and its "
                    "directory writable, or set HILNAS_HOME to a writable directory (commands "
                    "that only read, such as `hilnas devices list`, work on a read-only store)"
                )
            if "locked" in low:
                return StoreError(
                    f"the store {self.display_url} stayed locked for "
                    f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s ({msg}); another hilnas process holds "
                    "it: wait for it or stop it"
                )
        if isinstance(exc, sa_exc.OperationalError):
            first = msg.strip().splitlines()[0] if msg.strip() else msg
            return StoreError(
                f"cannot open the store {self.display_url} ({first}); "
                "check that the server is running and the URL, user and password are right"
            )
        return StoreError(f"cannot open the store {self.display_url}: {msg}")

    # ----- meta -------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._read() as conn:
            return {k: v for k, v in conn.execute(select(meta_table.c.key, meta_table.c.value))}

    @property
    def schema_version(self) -> int:
        return int(self.meta()["schema_version"])
