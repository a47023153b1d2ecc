"""Encryption at rest for OAuth tokens: Fernet round trips, key rotation, clear errors that never show a
key, keys checked by the settings, and the development key file."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from core.config import Settings, get_settings
from core.infra.crypto import (
    DEV_KEY_FILE,
    CipherError,
    TokenCipher,
    cipher_for,
    decrypt_token,
    encrypt_token,
)
from core.infra.fernet_keys import parse_keys

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): key rotation times

TOKEN = "EAAB-page-token-0123456789abcdef"
STRONG = {"api_token": "a-real-api-token-0123456789", "signing_key": "a-real-signing-key-0123456789",
          "ui_password_hash": f"scrypt$16384$8$1${'A' * 22}==${'B' * 43}="}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings made here read nothing from the developer's environment or a .env file."""
    for name in [n for n in os.environ if n.startswith("STUDIO_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg]


def new_key() -> str:
    return Fernet.generate_key().decode()


# --- round trip and rotation ---------------------------------------------------------------------------------


def test_a_token_round_trips_and_the_ciphertext_does_not_contain_it():
    cipher = TokenCipher(new_key())
    sealed = cipher.encrypt(TOKEN)
    assert TOKEN not in sealed and sealed != TOKEN
    assert cipher.decrypt(sealed) == TOKEN
    assert cipher.encrypt(TOKEN) != sealed  # a fresh IV each time: equal tokens do not look equal
    assert cipher.decrypt(cipher.encrypt("jeton-ü-🔑")) == "jeton-ü-🔑"


def test_with_several_keys_the_first_encrypts_and_all_decrypt():
    old, new = new_key(), new_key()
    from_old = TokenCipher(old).encrypt(TOKEN)
    both = TokenCipher(f" {new} , {old} ")  # spaces around the commas are fine
    assert both.decrypt(from_old) == TOKEN
    from_both = both.encrypt(TOKEN)
    assert TokenCipher(new).decrypt(from_both) == TOKEN
    with pytest.raises(CipherError):
        TokenCipher(old).decrypt(from_both)


def test_rotate_re_encrypts_an_old_ciphertext_under_the_new_key():
    old, new = new_key(), new_key()
    from_old = TokenCipher(old).encrypt(TOKEN)
    rotated = TokenCipher(f"{new},{old}").rotate(from_old)
    assert rotated != from_old
    assert TokenCipher(new).decrypt(rotated) == TOKEN  # the old key can now be dropped
    with pytest.raises(CipherError):
        TokenCipher(old).decrypt(rotated)


# --- errors ----------------------------------------------------------------------------------------------------


def test_a_wrong_key_raises_a_cipher_error_that_says_how_to_fix_it_and_shows_no_key():
    right, wrong = new_key(), new_key()
    sealed = TokenCipher(right).encrypt(TOKEN)
    with pytest.raises(CipherError) as refused:
        TokenCipher(wrong).decrypt(sealed)
    message = str(refused.value)
    assert "STUDIO_TOKEN_ENCRYPTION_KEY" in message
    assert "put the old key after the new one" in message
    assert right not in message and wrong not in message and TOKEN not in message and sealed not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__  # no InvalidToken chain


def test_a_tampered_ciphertext_is_refused():
    cipher = TokenCipher(new_key())
    sealed = cipher.encrypt(TOKEN)
    raw = bytearray(base64.urlsafe_b64decode(sealed))
    raw[-40] ^= 1  # flip one bit of the encrypted body
    with pytest.raises(CipherError):
        cipher.decrypt(base64.urlsafe_b64encode(bytes(raw)).decode())
    with pytest.raises(CipherError):
        cipher.decrypt("not a ciphertext at all")


def test_rotating_with_no_matching_key_is_a_cipher_error_without_the_key():
    key = new_key()
    sealed = TokenCipher(new_key()).encrypt(TOKEN)
    with pytest.raises(CipherError, match="cannot be decrypted with any configured key") as refused:
        TokenCipher(key).rotate(sealed)
    assert key not in str(refused.value)


@pytest.mark.parametrize("value", ["", " ", " , ,"])
def test_an_empty_key_list_is_refused(value):
    with pytest.raises(ValueError, match="no key given"):
        parse_keys(value)


# --- keys checked by the settings ------------------------------------------------------------------------------


def _malformed(position: int) -> str:
    bad = {1: "not-a-fernet-key", 2: "c2hvcnQ=", 3: base64.urlsafe_b64encode(b"16 bytes only!!!").decode()}[position]
    keys = [new_key() for _ in range(position - 1)] + [bad]
    return ",".join(keys)


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize("position", [1, 2, 3])
def test_a_malformed_key_is_refused_by_the_settings_in_every_mode_naming_its_position(tmp_path, env, position):
    value = _malformed(position)
    with pytest.raises(ValidationError) as refused:
        settings(tmp_path, env=env, token_encryption_key=value, **STRONG)
    [error] = refused.value.errors()
    message = error["msg"]
    assert "STUDIO_TOKEN_ENCRYPTION_KEY" in message
    assert f"key {position} is not a Fernet key" in message
    assert "python -m workers new-encryption-key" in message  # how to make a good one
    assert all(part not in message for part in value.split(","))


def test_the_same_malformed_key_from_the_environment_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", f"{new_key()},oops")
    with pytest.raises(ValidationError, match="key 2 is not a Fernet key"):
        Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]


def test_production_without_a_key_refuses_to_start(tmp_path):
    with pytest.raises(ValidationError) as refused:
        settings(tmp_path, env="production", **STRONG)
    assert "STUDIO_TOKEN_ENCRYPTION_KEY" in str(refused.value)
    assert not (tmp_path / "data" / DEV_KEY_FILE).exists()
    # With a key the same settings start, and use that key.
    key = new_key()
    production = settings(tmp_path, env="production", token_encryption_key=key, **STRONG)
    assert TokenCipher(key).decrypt(cipher_for(production).encrypt(TOKEN)) == TOKEN
    assert not (tmp_path / "data" / DEV_KEY_FILE).exists()


def test_the_cipher_refuses_production_settings_without_a_key_even_if_unvalidated(tmp_path):
    unchecked = Settings.model_construct(env="production", data_dir=tmp_path / "data")
    with pytest.raises(CipherError, match="STUDIO_TOKEN_ENCRYPTION_KEY is required outside development"):
        cipher_for(unchecked)
    assert not (tmp_path / "data" / DEV_KEY_FILE).exists()


# --- the development key file ---------------------------------------------------------------------------------


def test_development_without_a_key_makes_a_private_key_file_once_and_reuses_it(tmp_path):
    development = settings(tmp_path, env="development")
    key_file = tmp_path / "data" / DEV_KEY_FILE
    assert not key_file.exists()

    first = cipher_for(development)

    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    Fernet(key.encode())  # a valid Fernet key
    modified = key_file.stat().st_mtime_ns

    second = cipher_for(settings(tmp_path, env="development"))

    assert key_file.read_text() == key and key_file.stat().st_mtime_ns == modified
    assert second.decrypt(first.encrypt(TOKEN)) == TOKEN
    assert first.decrypt(second.encrypt(TOKEN)) == TOKEN
    assert TokenCipher(key).decrypt(first.encrypt(TOKEN)) == TOKEN


def test_another_data_dir_gets_its_own_development_key(tmp_path):
    one = cipher_for(Settings(_env_file=None, data_dir=tmp_path / "one"))  # type: ignore[call-arg]
    two = cipher_for(Settings(_env_file=None, data_dir=tmp_path / "two"))  # type: ignore[call-arg]
    with pytest.raises(CipherError):
        two.decrypt(one.encrypt(TOKEN))


def test_a_configured_key_wins_over_the_development_key_file(tmp_path):
    key = new_key()
    cipher = cipher_for(settings(tmp_path, env="development", token_encryption_key=key))
    assert TokenCipher(key).decrypt(cipher.encrypt(TOKEN)) == TOKEN
    assert not (tmp_path / "data" / DEV_KEY_FILE).exists()


def test_encrypt_token_uses_the_configured_key_and_follows_a_settings_change(tmp_path, monkeypatch):
    first, second = new_key(), new_key()
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", first)
    get_settings.cache_clear()
    sealed = encrypt_token(TOKEN)
    assert TokenCipher(first).decrypt(sealed) == TOKEN
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", f"{second},{first}")
    get_settings.cache_clear()
    assert decrypt_token(sealed) == TOKEN  # the old key still decrypts after a rotation
    assert TokenCipher(second).decrypt(encrypt_token(TOKEN)) == TOKEN
