"""The pure parts of gateway auth: token shape, hash and display, role and name
checks, principals, and sessions at injected instants (no database, no clock)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tickbase.errors import ConfigurationError, InvalidCredentials
from tickbase.gateway.auth import (
    PREFIX_LENGTH,
    SESSION_MAX_AGE,
    SESSION_TTL_DEFAULT,
    TOKEN_NAME_MAX,
    TOKEN_PREFIX,
    CreatedToken,
    Principal,
    SessionSigner,
    TokenInfo,
    check_role,
    check_token_name,
    new_token,
    token_display,
    token_hash,
)

SECRET = b"s" * 32
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payload_of(session: str) -> dict[str, Any]:
    body = session.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def signed(payload: dict[str, Any], secret: bytes = SECRET) -> str:
    """A correctly signed session over any payload (what a holder of the secret could write)."""
    body = b64(json.dumps(payload, separators=(",", ":")).encode())
    return body + "." + b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


VALID = {"sub": "a", "role": "admin", "exp": int(NOW) + 60, "tid": 4, "ath": int(NOW)}

# ---- tokens ------------------------------------------------------------------------


def test_new_token_is_prefix_and_43_url_safe_characters() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200  # 256 random bits: no repeats
    for token in tokens:
        assert re.fullmatch(r"tb_[A-Za-z0-9_-]{43}", token), token
    assert TOKEN_PREFIX == "tb_"


def test_token_hash_is_the_sha256_digest_of_the_utf8_text() -> None:
    token = "tb_" + "A" * 43
    assert token_hash(token) == hashlib.sha256(token.encode()).digest()
    assert len(token_hash(token)) == 32
    assert token_hash(token) != token_hash(token[:-1] + "B")
    assert token_hash("tb_é") == hashlib.sha256("tb_é".encode()).digest()


def test_token_display_is_the_prefix_and_six_characters() -> None:
    token = "tb_abcdef" + "Z" * 37
    assert PREFIX_LENGTH == 9
    assert token_display(token) == "tb_abcdef"
    assert token_display(new_token()).startswith("tb_")
    assert len(token_display(new_token())) == 9


def test_created_token_repr_hides_the_token() -> None:
    token = new_token()
    created = CreatedToken(id=1, name="ci", role="admin", token=token, prefix=token_display(token))
    assert token not in repr(created) and token[PREFIX_LENGTH:] not in repr(created)
    assert token_display(token) in repr(created)


def test_token_info_active_and_to_dict() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    live = TokenInfo(1, "a", "viewer", "tb_abcdef", created, None, None)
    revoked = TokenInfo(2, None, "admin", "tb_ghijkl", created, created, created)
    assert live.active and not revoked.active
    assert live.to_dict() == {
        "id": 1,
        "name": "a",
        "role": "viewer",
        "prefix": "tb_abcdef",
        "created_at": created,
        "last_used_at": None,
        "revoked_at": None,
    }


# ---- roles and names ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_check_role_accepts_the_two_roles(role: str) -> None:
    assert check_role(role) == role


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("root", "invalid role 'root': must be 'admin' or 'viewer'"),
        ("", "invalid role '': must be 'admin' or 'viewer'"),
        ("Admin", "invalid role 'Admin': must be 'admin' or 'viewer' (did you mean 'admin'?)"),
        (
            " VIEWER ",
            "invalid role ' VIEWER ': must be 'admin' or 'viewer' (did you mean 'viewer'?)",
        ),
        (
            "viewer\n",
            "invalid role 'viewer\\n': must be 'admin' or 'viewer' (did you mean 'viewer'?)",
        ),
    ],
)
def test_check_role_refuses_with_the_choices_and_a_hint(role: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_role(role)
    assert str(refused.value) == message


def test_check_role_refuses_what_is_not_text() -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_role(None)  # type: ignore[arg-type]
    assert str(refused.value) == "invalid role None: must be 'admin' or 'viewer'"


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("grafana", "grafana"),
        ("  ci bot  ", "ci bot"),
        ("x" * TOKEN_NAME_MAX, "x" * 200),
        ("é", "é"),
    ],
)
def test_check_token_name_strips(name: str, stored: str) -> None:
    assert check_token_name(name) == stored


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "invalid token name: must be text"),
        (5, "invalid token name: must be text"),
        ("", "invalid token name: must be 1 to 200 characters"),
        ("   ", "invalid token name: must be 1 to 200 characters"),
        ("x" * 201, "invalid token name: must be 1 to 200 characters"),
        (
            "a\x00b",
            "invalid token name: control characters are not allowed (it is a printable label)",
        ),
        (
            "line\nbreak",
            "invalid token name: control characters are not allowed (it is a printable label)",
        ),
        (
            "esc\x1b[31m",
            "invalid token name: control characters are not allowed (it is a printable label)",
        ),
    ],
)
def test_check_token_name_refuses_with_what_is_wrong(name: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_token_name(name)
    assert str(refused.value) == message


def test_a_long_name_counts_after_stripping() -> None:
    assert check_token_name(" " + "x" * 200 + " ") == "x" * 200


# ---- principals --------------------------------------------------------------------


def test_principal_key_is_the_token_id_not_the_name() -> None:
    assert Principal("alice", "admin", 7).key == "token:7"
    assert Principal("bob", "admin", 7).key == Principal("alice", "viewer", 7).key
    assert Principal("embedded", "admin", None).key == "user:embedded"
    assert Principal("x", "admin", 1).can_write and not Principal("x", "viewer", 1).can_write
    # signed_in_at is not part of who someone is
    assert Principal("a", "admin", 1, signed_in_at=1.0) == Principal("a", "admin", 1)


# ---- sessions ----------------------------------------------------------------------


def test_issue_with_expiry_returns_the_session_and_its_expiry() -> None:
    signer = SessionSigner(SECRET)
    session, expires = signer.issue_with_expiry(Principal("a", "viewer", 2), ttl=90.7, now=NOW)
    assert expires == int(NOW + 90.7) == payload_of(session)["exp"]
    default = signer.issue(Principal("a", "viewer", 2), now=NOW)
    assert payload_of(default)["exp"] == int(NOW + SESSION_TTL_DEFAULT)


def test_verify_returns_the_sign_in_time() -> None:
    signer = SessionSigner(SECRET)
    principal = signer.verify(signer.issue(Principal("a", "admin", 3), now=NOW), now=NOW)
    assert principal.signed_in_at == NOW
    assert (principal.user, principal.role, principal.token_id) == ("a", "admin", 3)


def test_the_last_second_before_expiry_is_valid() -> None:
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("a", "admin", 3), ttl=60, now=NOW)
    assert signer.verify(session, now=NOW + 59.999).user == "a"
    with pytest.raises(InvalidCredentials, match=r"^session expired$"):
        signer.verify(session, now=NOW + 60)


def test_renewals_end_12_hours_after_sign_in() -> None:
    """Each renewal issues from the verified session; the chain stops at SESSION_MAX_AGE."""
    assert SESSION_MAX_AGE == 12 * 3600
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("ops", "admin", 9), ttl=3600, now=NOW)
    at = NOW
    expiries = []
    while True:
        at += 3000  # renew well within each hour
        try:
            holder = signer.verify(session, now=at)
        except InvalidCredentials as refused:
            assert str(refused) == "session expired"
            break
        assert holder.signed_in_at == NOW  # a renewal keeps the sign-in
        session, expires = signer.issue_with_expiry(holder, ttl=3600, now=at)
        assert payload_of(session)["ath"] == int(NOW)
        expiries.append(expires)
    assert max(expiries) == int(NOW + SESSION_MAX_AGE)
    assert at >= NOW + SESSION_MAX_AGE
    assert at - 3000 < NOW + SESSION_MAX_AGE


def test_a_session_past_its_sign_in_age_is_expired_whatever_its_exp() -> None:
    """A payload with a far exp (signed by a holder of the secret, or an old
    gateway) still ends SESSION_MAX_AGE after its ath."""
    signer = SessionSigner(SECRET)
    session = signed(VALID | {"exp": int(NOW) + 10 * 86400})
    assert signer.verify(session, now=NOW + SESSION_MAX_AGE - 1).user == "a"
    with pytest.raises(InvalidCredentials, match=r"^session expired$"):
        signer.verify(session, now=NOW + SESSION_MAX_AGE)


def test_a_principal_signed_in_long_ago_gets_a_session_that_is_already_over() -> None:
    signer = SessionSigner(SECRET)
    stale = Principal("ops", "admin", 1, signed_in_at=NOW - SESSION_MAX_AGE - 5)
    session, expires = signer.issue_with_expiry(stale, ttl=3600, now=NOW)
    assert expires == int(NOW - 5)
    with pytest.raises(InvalidCredentials, match=r"^session expired$"):
        signer.verify(session, now=NOW)


def test_the_full_valid_payload_is_accepted() -> None:
    principal = SessionSigner(SECRET).verify(signed(VALID), now=NOW)
    assert principal == Principal("a", "admin", 4)
    assert SessionSigner(SECRET).verify(signed(VALID | {"tid": None}), now=NOW).token_id is None


@pytest.mark.parametrize("missing", ["sub", "role", "exp", "tid", "ath"])
def test_each_payload_field_is_required(missing: str) -> None:
    payload = {key: value for key, value in VALID.items() if key != missing}
    with pytest.raises(InvalidCredentials, match=r"^malformed session$"):
        SessionSigner(SECRET).verify(signed(payload), now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"ath": True},
        {"ath": float(NOW)},
        {"ath": str(int(NOW))},
        {"exp": float(NOW + 60)},
        {"tid": True},
        {"tid": 4.0},
        {"role": None},
        {"sub": None},
    ],
)
def test_payload_fields_of_the_wrong_type_are_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials, match=r"^malformed session$"):
        SessionSigner(SECRET).verify(signed(VALID | change), now=NOW)


@pytest.mark.parametrize(
    "session",
    [
        None,
        b"bytes.session",
        "x.y",  # one base64url character is never a whole byte
        "e30.ab=c",  # padding or characters outside the alphabet
        "e30.a+b/",
    ],
)
def test_malformed_shapes_are_refused_before_the_signature(session: Any) -> None:
    with pytest.raises(InvalidCredentials, match=r"^malformed session$"):
        SessionSigner(SECRET).verify(session, now=NOW)


def test_a_tampered_body_fails_the_signature_before_its_payload_is_read() -> None:
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("bob", "viewer", 3), now=NOW)
    body, signature = session.split(".")
    # an unsigned body that is not even JSON: the signature check answers first
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(b64(b"not json") + "." + signature, now=NOW)
    # a session signed with the secret of another database
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(signed(VALID, secret=b"t" * 32), now=NOW)
    # one character appended to the body
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(body + "A." + signature, now=NOW)


def test_refusals_never_quote_the_session() -> None:
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("bob", "viewer", 3), ttl=1, now=NOW)
    for attempt, at in ((session, NOW + 5), (session[:-2] + "AA", NOW), (session + "!", NOW)):
        with pytest.raises(InvalidCredentials) as refused:
            signer.verify(attempt, now=at)
        assert session.split(".")[1] not in str(refused.value)
        assert session.split(".")[0] not in str(refused.value)


def test_secret_of_exactly_32_bytes_is_enough() -> None:
    assert SessionSigner(b"x" * 32)
    with pytest.raises(
        ConfigurationError, match=r"session secret too short: 31 bytes, need at least 32"
    ):
        SessionSigner(b"x" * 31)
    assert "x" * 8 not in repr(SessionSigner(b"x" * 40))
