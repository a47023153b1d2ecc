"""HMAC-SHA256 signatures of webhook bodies, both ways: n8n → studio (optional, checked with a time
window and a replay guard) and studio → n8n (every notification).

The signed message is ``"<unix timestamp>.<raw body>"`` (the Stripe/Slack scheme), sent as
``X-Studio-Timestamp`` and ``X-Studio-Signature: sha256=<hex>``. Binding the timestamp into the
signature stops an old signed request from being replayed with a fresh timestamp; remembering each
signature for the window stops it being replayed within the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-studio-signature"
TIMESTAMP_HEADER = "x-studio-timestamp"


class SignatureError(Exception):
    """Why a signed request was refused (shown to the caller; contains no secret)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> tuple[str, str]:
    """(timestamp, signature header value) for a body."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return stamp, f"sha256={digest}"


def verify(secret: str, body: bytes, *, timestamp: str | None, signature: str | None, window_s: int,
           now: float | None = None) -> str:
    """Check a signature and its timestamp; returns the signature (the replay guard's key)."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Studio-Timestamp or X-Studio-Signature")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:  # "²" is a digit to isdigit
        raise SignatureError("X-Studio-Timestamp must be unix seconds")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > window_s:
        raise SignatureError(f"timestamp outside the {window_s} s window (clock skew or a replayed request)")
    _, expected = sign(secret, body, int(timestamp))
    if not signature.isascii() or not hmac.compare_digest(expected, signature.strip()):  # it raises on non-ASCII
        raise SignatureError("signature does not match the body")
    return expected
