"""Encryption at rest for the OAuth tokens of social accounts (Fernet: AES-128-CBC + HMAC-SHA256).

``STUDIO_TOKEN_ENCRYPTION_KEY`` holds one Fernet key or several, comma-separated: the first
encrypts, all of them decrypt, so a key can be rotated by putting the new one first and
re-encrypting (``rotate``). Outside development the settings refuse to start without a key;
in development one is generated once and kept in ``<data_dir>/token-encryption.key`` (0600),
so a demo works without configuration and its tokens survive a restart.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.config import Settings, get_settings
from core.errors import StudioError
from core.infra.fernet_keys import parse_keys

DEV_KEY_FILE = "token-encryption.key"


class CipherError(StudioError):
    """A stored token cannot be decrypted: the key changed, or the value was tampered with."""


def _development_key(data_dir: Path) -> str:
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # O_EXCL: two processes starting together agree on the first key written.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


class TokenCipher:
    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet(parse_keys(keys))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise CipherError(
                "a stored token cannot be decrypted with STUDIO_TOKEN_ENCRYPTION_KEY "
                "(was the key changed? put the old key after the new one, comma-separated)"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the first key (after a key rotation)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise CipherError("a stored token cannot be decrypted with any configured key") from None


def cipher_for(settings: Settings) -> TokenCipher:
    configured = settings.token_encryption_key.get_secret_value()
    if configured:
        return TokenCipher(configured)
    if not settings.is_development:  # the settings validator already refuses this; belt and braces
        raise CipherError("STUDIO_TOKEN_ENCRYPTION_KEY is required outside development")
    return TokenCipher(_development_key(settings.data_dir))


@lru_cache(maxsize=1)
def _cached_cipher(key_source: tuple[str, str]) -> TokenCipher:
    return cipher_for(get_settings())


def get_cipher() -> TokenCipher:
    settings = get_settings()
    return _cached_cipher((settings.token_encryption_key.get_secret_value(), str(settings.data_dir)))


def encrypt_token(plaintext: str) -> str:
    return get_cipher().encrypt(plaintext)


def decrypt_token(ciphertext: str) -> str:
    return get_cipher().decrypt(ciphertext)
