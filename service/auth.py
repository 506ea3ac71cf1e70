"""Bearer keys: ``Authorization: Bearer <key>``, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request


def bearer_key(request: Request) -> bytes | None:
    """The key a request presents, or None when it presents none."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip().encode("utf-8", "surrogateescape")


def key_matches(given: bytes | None, key: bytes | None) -> bool:
    return given is not None and key is not None and hmac.compare_digest(given, key)
