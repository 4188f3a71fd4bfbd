"""A real PostgreSQL server for the catalog's tests. `XEONFT_TEST_POSTGRES` names it and a role that may create
databases (`scripts/postgres.sh` makes both and prints the line to export); each test gets a database of its own,
dropped after it. Without the variable the tests skip, saying why, unless `XEONFT_REQUIRE_POSTGRES=1` (CI), where a
missing or unreachable server fails them."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

VARIABLE = "XEONFT_TEST_POSTGRES"


def _unavailable(why: str) -> None:
    if os.environ.get("XEONFT_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"XEONFT_REQUIRE_POSTGRES=1 but {why}")
    pytest.skip(f"{why}: set {VARIABLE} to a server's URL (scripts/postgres.sh starts one and prints it)")


def _admin(url: Any) -> dict[str, Any]:
    return {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
            "dbname": url.database, "connect_timeout": 5}


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL (password included) of a new, empty database on the test server, dropped when the block ends."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    given = os.environ.get(VARIABLE)
    if not given:
        _unavailable(f"{VARIABLE} is not set")
    url = make_url(given or "")
    name = f"xeonft_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(**_admin(url), autocommit=True) as con:
            con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg.Error as err:
        _unavailable(f"the server of {VARIABLE} ({url.render_as_string(hide_password=True)}) cannot make a database "
                     f"({type(err).__name__}: {' '.join(str(err).split())[:200]})")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(url, name)


def _drop(url: Any, name: str, attempts: int = 20) -> None:
    """Drop a test database. `with (force)` ends the test's own stray sessions, but a role that is not a superuser
    may not end an autovacuum worker's (InsufficientPrivilege, as in CI): then a plain drop, which asks such a
    worker to leave, is tried again until the database is free; one left behind is a warning, not a failure."""
    import warnings

    import psycopg
    from psycopg import sql

    err: psycopg.Error | None = None
    for attempt in range(attempts):
        force = sql.SQL(" with (force)") if attempt == 0 else sql.SQL("")
        try:
            with psycopg.connect(**_admin(url), autocommit=True) as con:
                con.execute(sql.SQL("drop database if exists {}{}").format(sql.Identifier(name), force))
            return
        except psycopg.Error as e:
            err = e
            time.sleep(0.5)
    warnings.warn(f"test database {name} was left on the server: {type(err).__name__}: {err}", stacklevel=2)
