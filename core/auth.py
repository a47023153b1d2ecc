"""Login password hashing and secret comparison, all in constant time.

Passwords are hashed with scrypt (``cryptography``'s KDF, whose ``verify`` compares in
constant time); the stored form is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import base64
import hmac
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

_N, _R, _P, _LENGTH = 2**14, 8, 1, 32


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=_LENGTH, n=_N, r=_R, p=_P).derive(password.encode())
    encode = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.urlsafe_b64decode(salt_b64)
        digest = base64.urlsafe_b64decode(digest_b64)
        Scrypt(salt=salt, length=len(digest), n=int(n), r=int(r), p=int(p)).verify(password.encode(), digest)
    except (ValueError, InvalidKey):
        return False
    return True


def secrets_match(given: str | None, expected: str) -> bool:
    """Compare a presented token with the configured one without leaking timing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
