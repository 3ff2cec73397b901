"""Who may use the gateway: API tokens, dashboard sessions, and roles.

Overview
    Programs authenticate with an **API token** (``tb_`` + 43 URL-safe
    characters, 256 random bits) sent as ``Authorization: Bearer <token>`` on
    HTTP requests and on the WebSocket handshake. Tokens are created by
    ``tickbase tokens create --role admin|viewer`` (or by ``tickbase up``, once,
    for the first admin) and shown once: ``tickbase.api_tokens`` keeps only
    their SHA-256 hash and a short display prefix.

    Browsers cannot set headers on a WebSocket, so the dashboard uses a
    **session**: a short-lived (default one hour) signed statement of who the
    holder is, passed as ``?session=``. A session is
    ``base64url(JSON {"sub", "role", "exp", "tid", "ath"}) "." base64url(HMAC-SHA256)``,
    keyed by a secret stored once in ``tickbase.auth_secrets`` so that every
    gateway process accepts the sessions of every other. ``tid`` is the id of
    the token it was issued from (a session dies with that token) and ``ath``
    the time of that sign-in: a session renewed from a session keeps it, so
    every session ends at the latest :data:`SESSION_MAX_AGE` after sign-in.

Identity
    Who a request acts as is the token's **id** (:attr:`Principal.key`),
    never its name: request results, connection and in-flight caps belong to
    the id. Names are labels, unique among live tokens.

    Two roles: a ``viewer`` reads; an ``admin`` also creates, changes,
    triggers and cancels (:attr:`Principal.can_write`).

Checks
    A token is looked up by its hash, so no comparison of secret bytes is
    made in Python at all and there is nothing to time: the index lookup
    leaks at most a prefix of a hash, which says nothing about a token. A
    session's signature is compared with :func:`hmac.compare_digest`, before
    its payload is trusted for anything. A session issued from a token dies
    with that token: :func:`authenticate` checks the token is still live.

Failure cases
    Every refusal is :class:`~tickbase.errors.InvalidCredentials` with a
    reason a person can act on ("session expired", "session signature
    invalid", "malformed session", "unknown or revoked API token", ...);
    the gateway answers it with 401. Neither the reason nor any log line
    quotes a token, a session or a secret: logs show token prefixes only.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import ConfigurationError, InvalidCredentials

__all__ = [
    "PREFIX_LENGTH",
    "ROLES",
    "SESSION_MAX_AGE",
    "SESSION_TTL_DEFAULT",
    "TOKEN_PREFIX",
    "CreatedToken",
    "InvalidCredentials",
    "Principal",
    "Role",
    "SessionSigner",
    "TokenInfo",
    "TokenStore",
    "authenticate",
    "check_role",
    "new_token",
    "parse_bearer",
    "token_display",
    "token_hash",
]

Q = load_queries("tickbase.gateway", "auth.sql")
logger = logging.getLogger("tickbase.auth")

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")

TOKEN_PREFIX = "tb_"
# secrets.token_urlsafe(32): 32 random bytes as unpadded base64url.
_TOKEN_RANDOM_CHARS = 43
_TOKEN = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{{_TOKEN_RANDOM_CHARS}}}")
# "tb_" and 6 random characters (36 bits): enough to tell tokens apart in a
# listing or a log line, too few to help anyone guess the remaining 220 bits.
PREFIX_LENGTH = len(TOKEN_PREFIX) + 6

SESSION_TTL_DEFAULT = 3600.0  # seconds
# However often a session is renewed from a session, it ends this long after
# its holder signed in with a token (a stolen session is not good forever).
SESSION_MAX_AGE = 12 * 3600.0  # seconds
SESSION_SECRET_NAME = "session"
SECRET_BYTES = 32  # HMAC-SHA256 keys shorter than the hash weaken it
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
TOKEN_NAME_MAX = 200  # characters, as the api_tokens_name_length constraint

# pg_advisory_xact_lock key serialising the bootstrap admin: int8 of b"tbBootst".
BOOTSTRAP_LOCK_KEY = int.from_bytes(b"tbBootst", "big", signed=True)
BOOTSTRAP_TOKEN_NAME = "bootstrap"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as, once its credentials are checked.

    ``user`` is the token's name, or ``token#<id>`` for an unnamed token; a
    session carries the user of the token it was issued from. ``token_id``
    is ``None`` only for principals made in code (tests, embedded use).

    Example::

        principal = await authenticate(tokens, signer, bearer=token, session=None)
        if not principal.can_write:
            ...  # 403
    """

    user: str
    role: Role
    token_id: int | None
    signed_in_at: float | None = field(default=None, compare=False)
    """For a session: when its holder first exchanged a token (Unix seconds). A
    session renewed from a session keeps it, so no chain of renewals outlives
    :data:`SESSION_MAX_AGE` from the sign-in."""

    @property
    def can_write(self) -> bool:
        """Whether this principal may create, change, trigger or cancel (admins only)."""
        return self.role == "admin"

    @property
    def key(self) -> str:
        """Who owns this principal's requests and counts against its caps.

        The token's id: a name is only a label, and two tokens (or a renamed
        one) must never share results or limits. Principals made in code
        (no token) are keyed by their user.
        """
        return f"token:{self.token_id}" if self.token_id is not None else f"user:{self.user}"


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """A token just created: the only place its plaintext ever exists.

    ``token`` is left out of ``repr()`` so that logging this object, or a
    traceback showing it, does not leak it.
    """

    id: int
    name: str | None
    role: Role
    token: str = field(repr=False)
    prefix: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One stored token as listings show it: never the token, never its hash."""

    id: int
    name: str | None
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the token is accepted (not revoked)."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_role(role: str) -> Role:
    """``role`` as a :data:`Role`, or :class:`~tickbase.errors.ConfigurationError` naming the choices.

    Example::

        check_role("viewer")  # "viewer"
        check_role("root")    # ConfigurationError: invalid role 'root': ...
    """
    if role in ROLES:
        return role
    hint = ""
    lowered = role.strip().lower() if isinstance(role, str) else ""
    if lowered in ROLES:
        hint = f" (did you mean {lowered!r}?)"
    raise ConfigurationError(f"invalid role {role!r}: must be 'admin' or 'viewer'{hint}")


def check_token_name(name: str) -> str:
    """``name`` stripped, or :class:`~tickbase.errors.ConfigurationError` saying what is wrong.

    A name is a label a person reads in listings: 1 to 200 printable characters.
    """
    if not isinstance(name, str):
        raise ConfigurationError("invalid token name: must be text")
    stripped = name.strip()
    if not 1 <= len(stripped) <= TOKEN_NAME_MAX:
        raise ConfigurationError(f"invalid token name: must be 1 to {TOKEN_NAME_MAX} characters")
    if not stripped.isprintable():
        raise ConfigurationError(
            "invalid token name: control characters are not allowed (it is a printable label)"
        )
    return stripped


def new_token() -> str:
    """A fresh API token: ``tb_`` + 43 URL-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """The SHA-256 digest stored for ``token``.

    A fast hash is right here: the token is 256 random bits, so no amount of
    hashing speed makes guessing it from the digest feasible (a password
    hash's slowness only protects low-entropy secrets).
    """
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_display(token: str) -> str:
    """The part of ``token`` safe to show or log (its first characters)."""
    return token[:PREFIX_LENGTH]


def parse_bearer(header_value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value.

    ``None`` when there is no header (the caller may look for a session
    instead). Any other scheme or shape is refused with
    :class:`~tickbase.errors.InvalidCredentials` rather than ignored, so a
    client sending ``Basic ...`` or a bare token learns what to fix instead
    of being told it sent nothing. The scheme is case-insensitive (RFC 9110).

    Example::

        parse_bearer("Bearer tb_Zk3...")  # "tb_Zk3..."
        parse_bearer(None)                # None
        parse_bearer("Basic dXNlcg==")    # InvalidCredentials
    """
    if header_value is None:
        return None
    scheme, _, rest = header_value.strip().partition(" ")
    token = rest.strip()
    if scheme.lower() != "bearer":
        raise InvalidCredentials(
            "unsupported Authorization header: send 'Authorization: Bearer <token>'"
        )
    if not token or any(char.isspace() for char in token):
        raise InvalidCredentials(
            "malformed Authorization header: send 'Authorization: Bearer <token>'"
        )
    return token


def _user_of(token_id: int, name: str | None) -> str:
    return name if name else f"token#{token_id}"


class TokenStore:
    """Create, check, list and revoke API tokens (pool-based, one statement each).

    Example::

        tokens = TokenStore(pool)
        created = await tokens.create("viewer", name="grafana")
        print(created.token)  # shown once; only its hash is stored
        principal = await tokens.verify(created.token)
        assert principal is not None and not principal.can_write
        await tokens.revoke(created.id)
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def create(self, role: str, name: str | None = None) -> CreatedToken:
        """Store a new token of ``role`` and return it, plaintext included, once.

        Refused with :class:`~tickbase.errors.ConfigurationError`, nothing
        stored: a role other than ``admin``/``viewer``, an empty or overlong
        name.
        """
        checked = check_role(role)
        if name is not None:
            name = check_token_name(name)
        token = new_token()
        async with self.pool.connection() as conn:
            with domain_errors({"token name": name, "role": checked}):
                cursor = await conn.execute(
                    Q["api_token_create"],
                    {
                        "name": name,
                        "role": checked,
                        "token_hash": token_hash(token),
                        "prefix": token_display(token),
                    },
                )
            row = await cursor.fetchone()
        assert row is not None
        created = CreatedToken(id=row[0], name=row[1], role=row[2], token=token, prefix=row[3])
        logger.info(
            "API token %d created: role=%s name=%s prefix=%s",
            created.id,
            created.role,
            created.name or "-",
            created.prefix,
        )
        return created

    async def verify(self, token: str) -> Principal | None:
        """The principal of a live token, or ``None`` (unknown, revoked, not a token).

        Marks the token used (``last_used_at``) at most once a minute.
        """
        # Not shaped like a token: no need to ask the database. The shape is
        # public, so refusing early tells an attacker nothing.
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["api_token_verify"], {"token_hash": token_hash(token)})
            row = await cursor.fetchone()
        if row is None:
            logger.debug("API token refused: prefix=%s", token_display(token))
            return None
        token_id, name, role = row
        return Principal(user=_user_of(token_id, name), role=role, token_id=token_id)

    async def active(self, token_id: int) -> bool:
        """Whether the token with this id exists and is not revoked."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["api_token_active"], {"id": token_id})
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def list(self) -> builtins.list[TokenInfo]:
        """Every token, revoked ones too, oldest first (prefixes, never hashes)."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["api_token_list"])
            return [TokenInfo(**row) for row in await cursor.fetchall()]

    async def revoke(self, token_id: int) -> bool:
        """Revoke a token at once; ``False`` when it is unknown or already revoked."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["api_token_revoke"], {"id": token_id})
            row = await cursor.fetchone()
        if row is None:
            return False
        logger.info("API token %d revoked", token_id)
        return True

    async def ensure_bootstrap_admin(self) -> CreatedToken | None:
        """Create the first admin token (named ``bootstrap``) if no token was ever stored.

        Returns it (for ``tickbase up`` to print once), else ``None``. Safe
        when several processes start together: they take turns under a
        transaction-level advisory lock, and only the first finds the table
        empty.
        """
        token = new_token()
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(Q["api_token_bootstrap_lock"], {"lock_key": BOOTSTRAP_LOCK_KEY})
            cursor = await conn.execute(
                Q["api_token_bootstrap"],
                {
                    "name": BOOTSTRAP_TOKEN_NAME,
                    "token_hash": token_hash(token),
                    "prefix": token_display(token),
                },
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        created = CreatedToken(id=row[0], name=row[1], role=row[2], token=token, prefix=row[3])
        logger.info("bootstrap admin API token %d created: prefix=%s", created.id, created.prefix)
        return created


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # urlsafe_b64decode silently skips characters outside the alphabet; a
    # session is refused instead, so one value has exactly one spelling.
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issue and check dashboard sessions, signed with a secret all gateways share.

    Example::

        signer = await SessionSigner.load(pool)
        session = signer.issue(principal, ttl=3600)
        # later, from ?session=... on the WebSocket handshake:
        principal = signer.verify(session)
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_BYTES:
            raise ConfigurationError(
                f"session secret too short: {len(secret)} bytes, need at least {SECRET_BYTES}"
            )
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "SessionSigner(secret=<hidden>)"

    @classmethod
    async def load(cls, pool: AsyncConnectionPool[AsyncConn]) -> SessionSigner:
        """The signer of this database's shared secret, creating the secret on first use."""
        params = {"name": SESSION_SECRET_NAME, "secret": secrets.token_bytes(SECRET_BYTES)}
        async with pool.connection() as conn:
            await conn.execute(Q["auth_secret_insert"], params)
            cursor = await conn.execute(Q["auth_secret_get"], {"name": SESSION_SECRET_NAME})
            row = await cursor.fetchone()
        assert row is not None
        return cls(bytes(row[0]))

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest()

    def issue(
        self, principal: Principal, ttl: float = SESSION_TTL_DEFAULT, now: float | None = None
    ) -> str:
        """A session for ``principal``, valid for ``ttl`` seconds (capped by sign-in age).

        ``now`` (Unix seconds) is for tests only.
        """
        return self.issue_with_expiry(principal, ttl, now)[0]

    def issue_with_expiry(
        self, principal: Principal, ttl: float = SESSION_TTL_DEFAULT, now: float | None = None
    ) -> tuple[str, int]:
        """A session for ``principal`` and when it expires (Unix seconds).

        It expires after ``ttl`` seconds, or earlier: :data:`SESSION_MAX_AGE`
        after the sign-in that ``principal`` stems from.
        """
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ConfigurationError(f"invalid session ttl {ttl!r}: must be a finite number > 0")
        issued_at = time.time() if now is None else now
        signed_in = principal.signed_in_at if principal.signed_in_at is not None else issued_at
        payload: dict[str, Any] = {
            "sub": principal.user,
            "role": principal.role,
            "exp": int(min(issued_at + ttl, signed_in + SESSION_MAX_AGE)),
            "tid": principal.token_id,
            "ath": int(signed_in),
        }
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return f"{body}.{_b64encode(self._sign(body))}", payload["exp"]

    def verify(self, session: str, now: float | None = None) -> Principal:
        """The principal a session was issued for, or :class:`~tickbase.errors.InvalidCredentials`.

        The signature is checked before anything in the payload is read.
        ``now`` (Unix seconds) is for tests only.
        """
        if not isinstance(session, str):
            raise InvalidCredentials("malformed session")
        body, dot, signature = session.partition(".")
        try:
            if not dot or not body:
                raise ValueError("no signature")
            given = _b64decode(signature)
        except ValueError:
            raise InvalidCredentials("malformed session") from None
        if not hmac.compare_digest(given, self._sign(body)):
            raise InvalidCredentials("session signature invalid")
        try:
            payload = json.loads(_b64decode(body))
            user, role, expires, token_id, signed_in = (
                payload["sub"],
                payload["role"],
                payload["exp"],
                payload["tid"],
                payload["ath"],
            )
        except (ValueError, KeyError, TypeError):
            raise InvalidCredentials("malformed session") from None
        if (
            not isinstance(user, str)
            or role not in ROLES
            # bool is an int too; exp and ath are always written as whole numbers.
            or type(expires) is not int
            or type(signed_in) is not int
            or not (token_id is None or type(token_id) is int)
        ):
            raise InvalidCredentials("malformed session")
        current = time.time() if now is None else now
        if expires <= current or signed_in + SESSION_MAX_AGE <= current:
            raise InvalidCredentials("session expired")
        return Principal(user=user, role=role, token_id=token_id, signed_in_at=float(signed_in))


async def authenticate(
    tokens: TokenStore,
    signer: SessionSigner,
    *,
    bearer: str | None,
    session: str | None,
) -> Principal:
    """The principal of a request, from its bearer token or else its session.

    ``bearer`` is the credential from :func:`parse_bearer` (an API token, or
    a session: the dashboard sends its session that way); ``session`` the
    ``?session=`` value. When both are given the bearer decides. Refused with
    :class:`~tickbase.errors.InvalidCredentials`: neither given, a bearer
    value not shaped like a token, an unknown or revoked token, a malformed, forged or expired session, or a session whose
    token was revoked since it was issued.

    Example::

        principal = await authenticate(
            tokens, signer,
            bearer=parse_bearer(request.headers.get("authorization")),
            session=request.query_params.get("session"),
        )
    """
    if bearer and not bearer.startswith(TOKEN_PREFIX) and "." in bearer:
        # A session sent as the bearer credential (the dashboard's fetches):
        # a session is base64url JSON, so it never begins with the token prefix.
        bearer, session = None, bearer
    if bearer:
        if not _TOKEN.fullmatch(bearer):
            raise InvalidCredentials(
                f"malformed API token: expected {TOKEN_PREFIX} and {_TOKEN_RANDOM_CHARS} characters"
            )
        principal = await tokens.verify(bearer)
        if principal is None:
            raise InvalidCredentials("unknown or revoked API token")
        return principal
    if session:
        principal = signer.verify(session)
        if principal.token_id is not None and not await tokens.active(principal.token_id):
            raise InvalidCredentials("session's API token was revoked: sign in again")
        return principal
    raise InvalidCredentials(
        "missing credentials: send 'Authorization: Bearer <token>' or '?session=<session>'"
    )
