"""Pieces of the embedded server's authentication and URL handling that need no server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tickbase.db.pgauth import HBA_CONF, create_password, hba_allows_passwordless, read_password
from tickbase.db.urls import describe_target, redact_url


@pytest.mark.parametrize(
    ("rules", "passwordless"),
    [
        (HBA_CONF, False),
        ("local all all trust\n", True),
        ("host all all 127.0.0.1 255.255.255.255 trust  # old style mask\n", True),
        ("host all all 127.0.0.1/32 scram-sha-256\nlocal all all peer\n", True),
        ("# local all all trust\nhost all all 127.0.0.1/32 md5\n", False),
    ],
)
def test_hba_rules_that_need_no_password_are_found(
    tmp_path: Path, rules: str, passwordless: bool
) -> None:
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(rules)
    assert hba_allows_passwordless(hba) is passwordless
    assert hba_allows_passwordless(tmp_path / "missing") is None


def test_the_password_file_is_created_0600_once_and_tightened_when_loosened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pg.password"
    password = create_password(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and read_password(path) == password
    with pytest.raises(FileExistsError):
        create_password(path)
    path.chmod(0o644)
    assert read_password(path) == password
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_urls_are_shown_without_their_password() -> None:
    url = "postgresql://u:s3cret@db.example:6543/x"
    assert redact_url(url) == "postgresql://u:***@db.example:6543/x"  # still a URL
    in_query = "postgresql://u@h/x?password=s3cret&sslmode=require"
    assert redact_url(in_query) == "postgresql://u@h/x?password=***&sslmode=require"
    assert redact_url("host=h password=s3cret dbname=x") == "password=*** dbname=x host=h"
    assert redact_url("postgresql://u@h/x") == "postgresql://u@h/x"
    assert describe_target(url) == "db.example:6543"
    assert describe_target("postgresql://u@/x?host=/run/pg&port=5") == "socket /run/pg, port 5"
