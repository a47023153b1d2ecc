"""Settings: one class, environment-driven, refusing placeholder secrets outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.infra.auth import hash_password

STRONG = "a-strong-secret-of-32-characters!"
OTHER = "another-strong-key-of-32-chars!?"
FERNET_KEY = "q7F0dW1oX2dP0mG4Yb2f3Zb5nq0aY8m1c2d3e4f5g6h="


def test_development_mode_accepts_the_demo_defaults():
    settings = Settings(_env_file=None, env="development")
    assert settings.api_token.get_secret_value() == "dev-api-token"
    assert settings.effective_database_url.startswith("sqlite:///")


def test_production_refuses_placeholder_secrets_and_names_them():
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, env="production")
    message = str(error.value)
    assert "STUDIO_API_TOKEN" in message and "STUDIO_SIGNING_KEY" in message and "STUDIO_UI_PASSWORD_HASH" in message


def test_production_refuses_disabling_the_login():
    with pytest.raises(ValidationError, match="AUTH_DISABLED"):
        Settings(_env_file=None, env="production", api_token=STRONG, signing_key=OTHER,
                 ui_password_hash=hash_password("correct horse"), auth_disabled=True)


def test_production_starts_with_real_secrets():
    settings = Settings(_env_file=None, env="production", api_token=STRONG, signing_key=OTHER,
                        ui_password_hash=hash_password("correct horse"), token_encryption_key=FERNET_KEY)
    assert settings.login_required


def test_production_refuses_to_start_without_a_token_encryption_key():
    with pytest.raises(ValidationError, match="STUDIO_TOKEN_ENCRYPTION_KEY"):
        Settings(_env_file=None, env="production", api_token=STRONG, signing_key=OTHER,
                 ui_password_hash=hash_password("correct horse"))


def _production(**secrets: str) -> Settings:
    values = {"api_token": STRONG, "signing_key": OTHER, "ui_password_hash": hash_password("correct horse"),
              "token_encryption_key": FERNET_KEY, **secrets}
    return Settings(_env_file=None, env="production", **values)


@pytest.mark.parametrize(("setting", "value", "why"), [
    ("api_token", "a" * 16, "distinct characters"),
    ("api_token", " " * 16, "blank"),
    ("signing_key", "abcdabcdabcdabcdabcd", "distinct characters"),
    ("signing_key", "0123456701234567012345670123", "repeated pattern"),
    ("metrics_token", "x", "shorter than 16"),
    ("webhook_secret", "short-secret", "shorter than 16"),
    ("signing_key", STRONG, "must all differ"),
    ("ui_password_hash", "scrypt$16384$8$1$not-base64!$abc", "not base64"),
    ("ui_password_hash", "plaintext-password", "not of the form"),
    ("ui_password_hash", hash_password("correct horse").replace("$16384$", "$1024$", 1), "scrypt cost"),
])
def test_production_refuses_weak_secrets_that_are_long_enough(setting, value, why):
    with pytest.raises(ValidationError, match=why) as error:
        _production(**{setting: value})
    assert value not in str(error.value) or len(value) < 4, "a refused secret is never echoed"


def test_production_refuses_the_s3_servers_default_secret():
    with pytest.raises(ValidationError, match="STUDIO_S3_SECRET_KEY is a placeholder"):
        _production(storage_backend="s3", s3_secret_key="minioadmin")


def test_database_and_redis_urls_are_read_from_the_conventional_names(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@db/studio")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    settings = Settings(_env_file=None)
    assert settings.effective_database_url == "postgresql+psycopg://u@db/studio"
    assert settings.redis_url == "redis://cache:6379/2"


def test_secrets_never_appear_in_the_settings_repr():
    settings = Settings(_env_file=None, api_token=STRONG)
    assert STRONG not in repr(settings)
    assert STRONG not in str(settings.model_dump())


def test_a_malformed_token_encryption_key_is_refused_in_every_mode():
    with pytest.raises(ValidationError, match="key 2 is not a Fernet key"):
        Settings(_env_file=None, env="development", token_encryption_key=f"{FERNET_KEY},not-a-key")
