"""A real PostgreSQL server for the catalog's tests. `XEONFT_TEST_POSTGRES` names it and a role that may create
databases (`scripts/postgres.sh` makes both and prints the line to export); each test gets a database of its own,
dropped after it. Without the variable the tests skip, saying why, unless `XEONFT_REQUIRE_POSTGRES=1` (CI), where a
missing or unreachable server fails them."""

from __future__ import annotations

import os
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
        with psycopg.connect(**_admin(url), autocommit=True) as con:
            con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
