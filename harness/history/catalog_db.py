"""Where a catalog is and how it is opened: an SQLite file (the embedded default, `results/catalog.sqlite`) or a
PostgreSQL database several machines share (`postgresql://user@host/db`, through psycopg 3).

`CatalogLocation.parse` reads what a user gave `--catalog` once; its `str` is the form every message shows, the
password hidden. `reading` and `writing` open one transaction: a reader sees one snapshot (SQLite read-only); a
writer waits for the writer before it (SQLite's busy timeout, PostgreSQL's transaction-level advisory lock), brings
the catalog to this xeonft's version (`harness.history.migrations`) and commits all or nothing. A problem is one
`CatalogError` naming the catalog: damaged, locked, full or newer (remedy: `history --rebuild`), a server that
cannot be reached (exit 3) or that refuses the URL (a wrong password, no such database: exit 2).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from harness.base.errors import Failure, XeonftError
from harness.base.messages import one_line
from harness.base.sniff import sqlite_problem
from harness.history import migrations
from harness.history.catalog_schema import CATALOG_VERSION

BUSY_SECONDS = 30.0  # how long a writer waits for another to finish before calling the catalog locked
CONNECT_SECONDS = 10  # how long to wait for a PostgreSQL server to answer
SERVER_SCHEMES = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                  "postgresql+psycopg": "postgresql+psycopg"}
WRITERS_LOCK = 0x7865_6F6E_6674  # the advisory lock every writer of a PostgreSQL catalog takes ("xeonft")


@dataclass(frozen=True)
class CatalogLocation:
    """Where a catalog is: exactly one of an SQLite file and a PostgreSQL URL. `str()` hides the password."""

    path: Path | None = None
    url: URL | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("a catalog is either a file or a server URL")

    @classmethod
    def parse(cls, where: CatalogLocation | Path | str) -> CatalogLocation:
        """A file path (or `sqlite:///path`), or a `postgresql://` URL; anything else is one line, the password
        of what was given never in it."""
        if isinstance(where, CatalogLocation):
            return where
        if isinstance(where, Path) or "://" not in where:
            return cls(path=Path(where))
        try:
            url = make_url(where)
        except (ArgumentError, ValueError):
            scheme = where.split("://", 1)[0]
            raise XeonftError(f"--catalog {scheme}://...: not a URL SQLAlchemy can read; give a file path or "
                              "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE") from None
        if url.drivername == "sqlite" and url.database:
            return cls(path=Path(url.database))
        if url.drivername not in SERVER_SCHEMES:
            raise XeonftError(f"--catalog {url.render_as_string(hide_password=True)}: a catalog is an SQLite file "
                              f"or a postgresql:// URL, not {url.drivername}://")
        if not url.database:
            raise XeonftError(f"--catalog {url.render_as_string(hide_password=True)}: the URL names no database "
                              "(postgresql://USER@HOST/DATABASE)")
        return cls(url=url)

    @property
    def server(self) -> bool:
        return self.url is not None

    @property
    def file(self) -> Path:
        """The SQLite file (only for a file catalog)."""
        if self.path is None:
            raise ValueError(f"{self} is not a file")
        return self.path

    def __str__(self) -> str:
        return str(self.path) if self.url is None else self.url.render_as_string(hide_password=True)


REBUILD = "rebuild"  # the remedy for a catalog that holds something wrong: make it anew from the result sets


class CatalogError(XeonftError):
    """The catalog cannot be read or written. The result sets are intact: a damaged, locked, newer or full catalog
    is rebuilt from them (`xeonft history --rebuild`); a server that refuses the URL is the user's to correct."""

    def __init__(self, catalog: CatalogLocation | Path | str, problem: str, remedy: str = REBUILD) -> None:
        where = str(catalog)
        if remedy == REBUILD:
            remedy = f"rebuild it from them with `xeonft history --rebuild --catalog {where}`"
        super().__init__(f"catalog {where} {problem}; the result sets are intact: {remedy}")
        self.catalog = catalog


class CatalogUnreachable(CatalogError, Failure):
    """The catalog's server cannot be reached (down, or the network): not the user's input, so exit 3."""


def _scrub(message: str, where: CatalogLocation) -> str:
    """A driver's message as one line, without the password even where a driver repeats it."""
    password = where.url.password if where.url is not None else None
    if password:
        message = message.replace(str(password), "***")
    return one_line(" ".join(message.split()), 240)


def _sqlite_problem(err: BaseException) -> str:
    message = str(getattr(err, "orig", None) or err)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return f"is locked by another writer (waited {BUSY_SECONDS:.0f} s)"
    if "full" in lowered:
        return "could not be written: the disk (or the database) is full; nothing was changed"
    return f"is damaged ({message})"


def _server_error(err: BaseException, where: CatalogLocation, connecting: bool) -> CatalogError:
    """What a PostgreSQL server said, as the error of its kind."""
    orig = getattr(err, "orig", None) or err
    code = getattr(orig, "sqlstate", None) or ""
    message = _scrub(str(orig), where)
    lowered = message.lower()
    user = where.url.username if where.url is not None else None
    fix = "correct the URL (a password may also come from PGPASSWORD or ~/.pgpass)"
    if code in ("28P01", "28000") or "password authentication failed" in lowered or "no password supplied" in lowered:
        return CatalogError(where, f"refused the password of user {user!r}", fix)
    if code == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return CatalogError(where, f"has no database {where.url.database if where.url else None!r} on its server",
                            "create it (createdb), or correct the URL")
    if "role" in lowered and "does not exist" in lowered:
        return CatalogError(where, f"has no user {user!r} on its server", fix)
    if "could not translate host name" in lowered or "failed to resolve host" in lowered:
        return CatalogError(where, f"names a host that cannot be found ({where.url.host if where.url else None})",
                            fix)
    if code == "55P03" or "lock timeout" in lowered:
        return CatalogError(where, f"is locked by another writer (waited {BUSY_SECONDS:.0f} s)")
    if code.startswith("53"):
        return CatalogError(where, f"could not be written: the server is out of space ({message}); nothing was "
                            "changed")
    if code == "42501":
        return CatalogError(where, f"refused user {user!r}: {message}", "grant it the rights, or use another user")
    if connecting or code.startswith(("08", "57")) or (isinstance(err, DBAPIError) and err.connection_invalidated):
        return CatalogUnreachable(where, f"cannot be reached: {message}",
                                  "add them when the server is back (`xeonft history --add SET --catalog URL`)")
    return CatalogError(where, f"could not be used ({message})")


def _problem(err: BaseException, where: CatalogLocation, connecting: bool = False) -> CatalogError:
    if where.server:
        return _server_error(err, where, connecting)
    return CatalogError(where, _sqlite_problem(err))


def _sqlite_engine(path: Path, write: bool) -> Engine:
    """An engine over one file: read-only unless writing, waiting `BUSY_SECONDS` for a writer, and beginning its
    own transactions (pysqlite's would start only at the first write: a writer takes the lock up front)."""

    def connect() -> sqlite3.Connection:
        if write:
            return sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS,
                               isolation_level=None)

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("begin immediate" if write else "begin")

    return engine


def _server_engine(url: URL) -> Engine:
    return create_engine(url.set(drivername=SERVER_SCHEMES[url.drivername]), poolclass=NullPool,
                         connect_args={"connect_timeout": CONNECT_SECONDS, "application_name": "xeonft"})


def _engine(where: CatalogLocation, write: bool) -> Engine:
    if where.url is not None:
        return _server_engine(where.url)
    return _sqlite_engine(where.file, write)


def _check_file(where: CatalogLocation) -> None:
    if where.path is not None and where.path.is_file():
        problem = sqlite_problem(where.path)
        if problem:
            raise CatalogError(where, problem)


def _check_version(where: CatalogLocation, version: int) -> None:
    if version > CATALOG_VERSION:
        raise CatalogError(where, f"has version {version}, newer than this xeonft writes ({CATALOG_VERSION}): "
                           "update xeonft, or rebuild it")


@contextmanager
def _transaction(where: CatalogLocation, write: bool) -> Iterator[Connection]:
    """One connection in one transaction, every database error turned into the catalog's one line."""
    engine = _engine(where, write)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as err:
            raise _problem(err, where, connecting=True) from None
        try:
            with conn.begin():
                yield conn
        except SQLAlchemyError as err:
            raise _problem(err, where) from None
        finally:
            conn.close()
    finally:
        engine.dispose()


@contextmanager
def reading(where: CatalogLocation) -> Iterator[tuple[Connection, int] | None]:
    """The catalog in one read-only snapshot, with its version; None where there is no catalog file yet."""
    if where.path is not None and not where.path.is_file():
        yield None
        return
    _check_file(where)
    with _transaction(where, write=False) as conn:
        if where.server:
            conn.exec_driver_sql("set transaction isolation level repeatable read, read only")
        version = migrations.stored_version(conn)
        _check_version(where, version)
        yield conn, version


@contextmanager
def writing(where: CatalogLocation) -> Iterator[Connection]:
    """The catalog in one write transaction, at this xeonft's version: committed when the block ends, rolled back
    if it raises (or the process dies). Writers of one catalog take turns."""
    _check_file(where)
    if where.path is not None:
        where.path.parent.mkdir(parents=True, exist_ok=True)
    with _transaction(where, write=True) as conn:
        if where.server:
            conn.exec_driver_sql(f"set local lock_timeout = '{int(BUSY_SECONDS * 1000)}ms'")
            conn.execute(text("select pg_advisory_xact_lock(:key)"), {"key": WRITERS_LOCK})
        version = migrations.stored_version(conn)
        _check_version(where, version)
        migrations.upgrade(conn, version)
        yield conn
