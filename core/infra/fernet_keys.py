"""Reading ``STUDIO_TOKEN_ENCRYPTION_KEY``: Fernet keys, comma-separated (a leaf, so the settings can check
the key without importing the cipher, which reads the settings)."""

from __future__ import annotations

from cryptography.fernet import Fernet


def parse_keys(value: str) -> list[Fernet]:
    """The Fernet keys in a comma-separated setting; a malformed key raises ValueError naming its position."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise ValueError("no key given")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:
            raise ValueError(
                f"key {position} is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                "`python -m workers new-encryption-key`)"
            ) from None
    return fernets
