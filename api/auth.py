"""Bearer tokens and roles for the HTTP API.

Roles are ordered: ``viewer`` (read) < ``operator`` (acknowledge, resolve, snooze) <
``admin`` (zones, config). Tokens are kept only as SHA-256 digests and a presented token is
compared against every digest in constant time, so neither memory dumps nor response timing
give a token away. Tokens come from the config (``api.tokens``: ``token`` or
``token_sha256``; the config loader overlays ``HARBOURWATCH_API_TOKEN_<NAME>``) or, for a
run without a config file, from ``HARBOURWATCH_API_TOKENS="name:role:token,..."``.

Without a token only ``/health`` answers (401), unless ``open_read`` lets anonymous callers
read as viewers. A known token with too small a role gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

TOKENS_ENV = "HARBOURWATCH_API_TOKENS"


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r} (viewer, operator or admin)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: the token's name goes into the audit trail."""

    name: str
    role: Role


ANONYMOUS = Principal("anonymous", Role.VIEWER)


class TokenSpec(Protocol):
    """One configured token (``harbourwatch.config.ApiToken`` has this shape)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def token(self) -> Any: ...  # str or pydantic SecretStr or None
    @property
    def token_sha256(self) -> str | None: ...


class AuthError(Exception):
    """401 (no or unknown token) or 403 (role too small)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if callable(getter) else value)


class Authenticator:
    """Maps a bearer token to a :class:`Principal`; holds digests only."""

    def __init__(self, entries: Iterable[tuple[str, Role, str]] = (), *,
                 open_read: bool = False) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for name, role, digest in entries:
            if len(digest) != 64:
                raise ValueError(f"token {name!r}: sha256 must be 64 hex digits")
            self._entries.append((bytes.fromhex(digest), Principal(name, role)))
        self.open_read = open_read

    def __len__(self) -> int:
        """How many tokens open the API."""
        return len(self._entries)

    @classmethod
    def from_config(cls, tokens: Iterable[TokenSpec] = (), *, open_read: bool = False,
                    env: Mapping[str, str] | None = None) -> Authenticator:
        """Tokens from the config plus ``HARBOURWATCH_API_TOKENS`` (name:role:token,...)."""
        entries: list[tuple[str, Role, str]] = []
        for spec in tokens:
            plain = _secret(spec.token)
            digest = sha256_hex(plain) if plain is not None else spec.token_sha256
            if digest is None:
                raise ValueError(f"token {spec.name!r}: give token or token_sha256")
            entries.append((spec.name, Role.parse(spec.role), digest.lower()))
        raw = (os.environ if env is None else env).get(TOKENS_ENV, "")
        for number, item in enumerate(filter(None, (p.strip() for p in raw.split(","))), 1):
            name, sep, rest = item.partition(":")
            role, sep2, token = rest.partition(":")
            if not (sep and sep2 and name and token):
                # Not the entry itself: it may be a token alone, and a log keeps it.
                raise ValueError(f"{TOKENS_ENV}: entry {number} is not name:role:token")
            try:
                parsed = Role.parse(role)
            except ValueError:
                # Fields in the wrong order put the token where the role goes: never echo it.
                raise ValueError(f"{TOKENS_ENV}: entry {number}: unknown role "
                                 "(viewer, operator or admin; entries are name:role:token)"
                                 ) from None
            entries.append((name, parsed, sha256_hex(token)))
        return cls(entries, open_read=open_read)

    @property
    def names(self) -> list[str]:
        return [p.name for _, p in self._entries]

    def identify(self, token: str) -> Principal | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        # Compare against every entry (no early exit), each in constant time.
        for digest, principal in self._entries:
            if hmac.compare_digest(digest, presented) and found is None:
                found = principal
        return found

    def check(self, authorization: str | None, needed: Role) -> Principal:
        """The caller for an ``Authorization`` header value, or :class:`AuthError`."""
        if not authorization:
            if self.open_read and needed <= Role.VIEWER:
                return ANONYMOUS
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
        principal = self.identify(token)
        if principal is None:
            raise AuthError(401, "unknown or revoked token")
        if principal.role < needed:
            raise AuthError(403, f"token {principal.name!r} has role {principal.role}; "
                                 f"this needs {needed}")
        return principal
