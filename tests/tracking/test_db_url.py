"""Database URLs checked before anything is written: each fault one line, the password never shown."""

from __future__ import annotations

import pytest

from tests.conftest import postgres_url, requires_postgres
from tracking.db_url import check_database_url
from tracking.errors import BadStoreUrl, TrackingUnavailable
from tracking.server import free_port


@pytest.mark.parametrize(
    ("url", "error", "says"),
    [
        ("nonsense", BadStoreUrl, "'nonsense' is not a database URL; write it as postgresql://"),
        ("foo://x/y", BadStoreUrl, "'foo' is not a kind of database"),
        ("mysql://u:pw@127.0.0.1/db", BadStoreUrl, "the driver for 'mysql' is not installed"),
        ("postgresql+psycopg://u:pw@127.0.0.1:{port}/db", TrackingUnavailable, "cannot connect to"),
    ],
)
def test_a_url_that_cannot_work_is_named_in_one_line_without_its_password(url, error, says):
    url = url.format(port=free_port())  # a closed port, chosen when the test runs (ids stay the same per worker)
    with pytest.raises(error) as info:
        check_database_url(url, "--storage")
    message = str(info.value)
    assert says in message and message.startswith("--storage") and "\n" not in message and "pw" not in message


def test_an_sqlite_file_is_only_parsed(tmp_path):
    check_database_url(f"sqlite:///{tmp_path}/none/yet.db", "--storage")
    assert not (tmp_path / "none").exists()


@requires_postgres
def test_a_missing_postgresql_database_is_named_at_once():
    base = postgres_url().replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    with pytest.raises(BadStoreUrl, match=r"database 'no_such_db_17' on .*does not exist.*create it or fix the URL"):
        check_database_url(f"{base}/no_such_db_17", "tracking URI")
    check_database_url(postgres_url().replace("postgresql://", "postgresql+psycopg://"), "tracking URI")
