"""The database: engine, schema creation and migration, and transactions.

Every write is one short transaction. On SQLite the connection runs in WAL mode with
`synchronous=FULL` (a commit survives a power cut, not just a crash) and every transaction starts
with `BEGIN IMMEDIATE`, because two writers that read first and then write otherwise fail with
"database is locked" despite `busy_timeout`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn
from sqlmodel import Session, SQLModel, create_engine

from monitor.errors import StoreError
from monitor.storage.tables import SCHEMA_VERSION, Delivery, EntryRow, FeedRow, Meta
from monitor.support import metrics
from monitor.support.secrets import mask_url

log = logging.getLogger("monitor")

IN_BATCH = 500  # ids per IN (...) list


# Columns each schema version added to existing tables (new tables come from create_all).
_MIGRATIONS: dict[int, list[tuple[type[SQLModel], str]]] = {
    2: [(Delivery, "kind"), (Delivery, "fields"), (Delivery, "held"), (EntryRow, "revised_at")],
    3: [(FeedRow, "outlet")],
    4: [(EntryRow, "explained")],
    5: [(FeedRow, "cadence"), (FeedRow, "cadence_reason"), (FeedRow, "cadence_hint"),
        (FeedRow, "boost_until")],
}


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000",
                       "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migrate(connection: Connection) -> None:
    """Bring a database written by an older monitor up to `SCHEMA_VERSION`, in place."""
    if not inspect(connection).has_table("meta"):
        return
    found = connection.execute(text("SELECT value FROM meta WHERE key = 'schema_version'"))
    version = found.scalar_one_or_none()
    if version is None or int(version) >= SCHEMA_VERSION:
        return
    for step in range(int(version) + 1, SCHEMA_VERSION + 1):
        for model, name in _MIGRATIONS.get(step, []):
            table: Any = model.__table__  # type: ignore[attr-defined]
            have = {c["name"] for c in inspect(connection).get_columns(table.name)}
            if name not in have:
                column = CreateColumn(table.c[name]).compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))
    if int(version) < 3:  # names were feed URLs with their credentials: mask them
        named = connection.execute(text("SELECT id, name FROM feeds WHERE name LIKE '%://%'"))
        for feed_id, name in named.all():
            connection.execute(text("UPDATE feeds SET name = :n WHERE id = :i"),
                               {"n": mask_url(name), "i": feed_id})
    connection.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                       {"v": str(SCHEMA_VERSION)})


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for a server or an in-memory database)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _make_engine(url: str, create: bool) -> Engine:
    try:
        path = sqlite_path(url)
        if path is not None:
            # A mistyped folder would otherwise start a fresh, empty history.
            if not path.parent.is_dir():
                raise StoreError(f"cannot use database {safe_database_url(url)}: the folder "
                                 f"{path.parent} does not exist (create it, or fix the path)")
            if not create and not path.exists():
                raise StoreError(f"no database at {path}: nothing has been recorded there yet "
                                 "(the daemon creates it on its first run; is this the "
                                 "config the service uses?)")
            # Created private before SQLite opens it (its -wal and -shm files take the
            # database file's mode): it holds every alert and the feeds' URLs.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            _sqlite_pragmas(engine)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, OSError, ValueError) as error:
        raise StoreError(f"cannot use database {safe_database_url(url)}: {error}") from None


def safe_database_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.rsplit("@", maxsplit=1)[-1]


def _insert_or_skip(session: Session, table: type[SQLModel]) -> Any:
    """An INSERT that skips rows whose unique key exists (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    builder: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if builder is None:
        raise StoreError(f"unsupported database {dialect}: use SQLite or PostgreSQL")
    return builder(table.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]


def insert_new_rows(session: Session, table: type[SQLModel],
                     rows: list[dict[str, Any]]) -> None:
    """Insert many rows at once, skipping those whose unique key exists."""
    session.execute(_insert_or_skip(session, table), rows)


def insert_new(session: Session, table: type[SQLModel], values: dict[str, Any],
                returning: Any = None) -> Any:
    """Insert a row unless its unique key exists; the new row's `returning` column (or True),
    None when it existed. Atomic on SQLite and PostgreSQL, so concurrent writers never clash."""
    statement = _insert_or_skip(session, table).values(**values)
    if returning is None:
        result: Any = session.execute(statement)
        return True if result.rowcount else None
    return session.execute(statement.returning(returning)).scalar_one_or_none()


_WROTE = "monitor_wrote"  # set on a connection's info by a statement that changes data


def _note_writes(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def wrote(connection: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            connection.info[_WROTE] = True


@dataclass(frozen=True)
class DatabaseFault:
    """Why the database is failing (its latest error) and since when."""

    reason: str
    since: datetime


class Database:
    """One database: its engine, its schema (created and migrated on open) and its
    transactions. The store's parts share one `Database`."""

    fault: DatabaseFault | None = None  # set while transactions fail (see `transaction`)

    def __init__(self, url: str, create: bool = True):
        """Open (and, with `create`, create) the database at `url`. Without `create` a
        database that holds no monitor data is an error: read-only commands must not leave
        an empty database where the service's was expected."""
        self.url = url
        self._lock = threading.RLock()
        self.engine = _make_engine(url, create)
        _note_writes(self.engine)
        try:
            self._prepare(create)
        except BaseException:
            self.engine.dispose()
            raise

    def _prepare(self, create: bool) -> None:
        """Create (where allowed) and migrate the schema."""
        url = self.url
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Instances starting together would race to create the same tables.
                    connection.execute(text("SELECT pg_advisory_xact_lock(7270001)"))
                if not create and not inspect(connection).has_table(Meta.__tablename__):
                    raise StoreError(f"database {safe_database_url(url)} holds no monitor data yet "
                                     "(the daemon creates it on its first run)")
                SQLModel.metadata.create_all(connection)
                _migrate(connection)
            self._check_schema()
        except SQLAlchemyError as error:
            raise StoreError(f"cannot use database {safe_database_url(url)}: "
                             f"{error.__class__.__name__}: {getattr(error, 'orig', error)}"
                             ) from None

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error.

        Database failures (disk full, lost connection, locked for too long) surface as
        StoreError with the database's own reason; nothing of the transaction is kept. Such a
        failure is also kept as `fault` until a transaction that writes commits: reads keep
        working on a full disk, so only a write shows that the database is usable again.
        """
        try:
            # One transaction at a time per process: threads queue here instead of spinning
            # in SQLite's busy handler.
            with self._lock, Session(self.engine, expire_on_commit=False) as session:
                with session.begin():
                    session.connection().info.pop(_WROTE, None)  # left by a failed one
                    yield session
                    wrote = session.connection().info.pop(_WROTE, False)
                if wrote and self.fault is not None:
                    log.warning("database usable again after failing since %s UTC",
                                f"{self.fault.since:%Y-%m-%d %H:%M}")
                    self.fault = None
                    metrics.DATABASE_FAILING.set(0)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            if isinstance(error, OperationalError | InterfaceError):
                self._note_fault(f"{error.__class__.__name__}: {reason}")
            raise StoreError(f"{error.__class__.__name__}: {reason}") from error

    def _note_fault(self, reason: str) -> None:
        metrics.DATABASE_ERRORS.inc()
        metrics.DATABASE_FAILING.set(1)
        if self.fault is None:
            self.fault = DatabaseFault(reason, datetime.now(UTC))
        elif self.fault.reason != reason:
            self.fault = DatabaseFault(reason, self.fault.since)

    def _check_schema(self) -> None:
        with self.transaction() as session:
            insert_new(session, Meta, {"key": "schema_version", "value": str(SCHEMA_VERSION)})
            row = session.get(Meta, "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise StoreError(f"database schema v{row.value} is newer than this monitor "
                                 f"(v{SCHEMA_VERSION}): upgrade monitor")

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self.transaction() as session:
            row = session.get(Meta, "schema_version")
            return int(row.value) if row else 0
