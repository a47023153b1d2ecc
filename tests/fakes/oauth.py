"""The authorization-server side of OAuth 2.0 (RFC 6749 + PKCE, RFC 7636) for the platform fakes.

Each platform fake owns one :class:`FakeOAuth` and serves its authorize and token endpoints in
the platform's own parameter names and response shapes. The authorize endpoint consents at once
(a test user who always clicks "Allow") and redirects to the exact registered redirect URI.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.responses import JSONResponse, RedirectResponse, Response


class OAuthFailure(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class TokenForm:
    """The fields a provider documents for one kind of token request (one ``grant_type``)."""
    required: frozenset[str]
    optional: frozenset[str] = frozenset()


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def check_token_form(fields: Mapping[str, str], forms: Mapping[str, TokenForm], *,
                     content_type: str | None = None) -> str:
    """The ``grant_type`` of a token request that is exactly one of the provider's documented forms.

    Refuses (OAuthFailure) a body that is not form-encoded (when ``content_type`` is given), a
    ``grant_type`` the provider does not document (``unsupported_grant_type``, RFC 6749 §5.2), a
    documented field missing or empty, and a field the docs do not list. Real providers ignore some
    unknown fields; the fake is stricter on purpose, so a test proves the studio sends exactly the
    documented form. Meta's code exchange has no ``grant_type``: its form is keyed by "".
    """
    if content_type is not None and not content_type.startswith(FORM_CONTENT_TYPE):
        raise OAuthFailure("invalid_request", f"the token request must be {FORM_CONTENT_TYPE}")
    grant_type = fields.get("grant_type", "")
    form = forms.get(grant_type)
    if form is None:
        raise OAuthFailure("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    missing = sorted(name for name in form.required if not fields.get(name))
    if missing:
        raise OAuthFailure("invalid_request", f"missing required parameter(s): {', '.join(missing)}")
    unknown = sorted(set(fields) - form.required - form.optional)
    if unknown:
        raise OAuthFailure("invalid_request", f"unknown parameter(s): {', '.join(unknown)}")
    return grant_type


def s256(verifier: str) -> str:
    """RFC 7636's S256: BASE64URL(SHA256(verifier)), no padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def s256_hex(verifier: str) -> str:
    """TikTok Login Kit for Desktop's variant: the SHA-256 digest hex-encoded
    (https://developers.tiktok.com/doc/login-kit-desktop/)."""
    return hashlib.sha256(verifier.encode()).hexdigest()


@dataclass
class IssuedToken:
    access_token: str
    refresh_token: str | None
    expires_at: float
    subject: str
    scope: str
    refresh_expires_at: float = float("inf")


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scope: str
    subject: str
    used: bool = False


@dataclass
class FakeOAuth:
    client_id: str
    client_secret: str
    redirect_uris: set[str]
    subject: str = "user-1"  # whose account the test user consents to
    access_ttl_s: int = 3600
    refresh_ttl_s: int = 31_536_000  # TikTok: 365 days; Google documents no fixed lifetime
    issue_refresh_tokens: bool = True
    challenge_of: Callable[[str], str] = s256  # how this provider derives the S256 challenge from the verifier
    pkce_refusal: tuple[str, str] = ("invalid_grant", "code_verifier does not match the code_challenge")
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, IssuedToken] = field(default_factory=dict)
    _refresh: dict[str, IssuedToken] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- authorize -----------------------------------------------------------------------------------

    def authorize(self, *, client_id: str, redirect_uri: str, state: str, code_challenge: str,
                  code_challenge_method: str, scope: str = "", response_type: str = "code") -> str:
        """The URL the browser is sent back to (code and state), after checking the request."""
        if client_id != self.client_id:
            raise OAuthFailure("invalid_client", "unknown client")
        if redirect_uri not in self.redirect_uris:  # exact match, as every provider requires
            raise OAuthFailure("redirect_uri_mismatch", f"{redirect_uri} is not a registered redirect URI")
        if response_type != "code":
            raise OAuthFailure("unsupported_response_type", response_type)
        if code_challenge_method != "S256" or not code_challenge:
            raise OAuthFailure("invalid_request", "PKCE with code_challenge_method=S256 is required")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(client_id, redirect_uri, code_challenge, code_challenge_method, scope,
                                      self.subject)
        return f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"

    def authorize_params(self, params: Mapping[str, str], *, client_id_param: str = "client_id") -> str:
        """:meth:`authorize` from the query string of an authorize request (TikTok says ``client_key``)."""
        return self.authorize(
            client_id=params.get(client_id_param, ""), redirect_uri=params.get("redirect_uri", ""),
            state=params.get("state", ""), code_challenge=params.get("code_challenge", ""),
            code_challenge_method=params.get("code_challenge_method", ""), scope=params.get("scope", ""),
            response_type=params.get("response_type", "code"),
        )

    def authorize_response(self, params: Mapping[str, str], *, client_id_param: str = "client_id") -> Response:
        """The authorize endpoint's answer: a 302 back to the client, or 400 with the OAuth error."""
        try:
            location = self.authorize_params(params, client_id_param=client_id_param)
        except OAuthFailure as failure:
            return JSONResponse({"error": failure.error, "error_description": failure.description}, status_code=400)
        return RedirectResponse(location, status_code=302)

    # --- token ------------------------------------------------------------------------------------------

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id != self.client_id or client_secret != self.client_secret:
            raise OAuthFailure("invalid_client", "client authentication failed")

    def _issue(self, subject: str, scope: str, refresh_token: str | None = None,
               refresh_expires_at: float | None = None) -> IssuedToken:
        token = IssuedToken(
            access_token=f"at-{secrets.token_urlsafe(16)}",
            refresh_token=refresh_token or (f"rt-{secrets.token_urlsafe(16)}" if self.issue_refresh_tokens else None),
            expires_at=time.time() + self.access_ttl_s, subject=subject, scope=scope,
            refresh_expires_at=(time.time() + self.refresh_ttl_s if refresh_expires_at is None else refresh_expires_at),
        )
        self._access[token.access_token] = token
        if token.refresh_token:
            self._refresh[token.refresh_token] = token
        return token

    def exchange_code(self, *, client_id: str | None, client_secret: str | None, code: str | None,
                      redirect_uri: str | None, code_verifier: str | None) -> IssuedToken:
        self._check_client(client_id, client_secret)
        with self._lock:
            grant = self._codes.get(code or "")
            if grant is None or grant.used:
                raise OAuthFailure("invalid_grant", "the authorization code is invalid or was already used")
            grant.used = True
            if redirect_uri != grant.redirect_uri:
                raise OAuthFailure("invalid_grant", "redirect_uri does not match the authorization request")
            if not code_verifier or self.challenge_of(code_verifier) != grant.challenge:
                raise OAuthFailure(*self.pkce_refusal)
            return self._issue(grant.subject, grant.scope)

    def refresh(self, *, client_id: str | None, client_secret: str | None, refresh_token: str | None) -> IssuedToken:
        self._check_client(client_id, client_secret)
        with self._lock:
            old = self._refresh.get(refresh_token or "")
            # RFC 6749 §5.2: an invalid, expired or revoked refresh token is invalid_grant; Google's words
            # (https://developers.google.com/identity/protocols/oauth2#expiration); TikTok's refresh token
            # lives 365 days (https://developers.tiktok.com/doc/oauth-user-access-token-management).
            if (old is None or old.refresh_token in self._revoked
                    or old.refresh_expires_at <= time.time()):
                raise OAuthFailure("invalid_grant", "Token has been expired or revoked.")
            # The refresh token is kept (Google sends none back, TikTok the same one) with its own lifetime.
            return self._issue(old.subject, old.scope, refresh_token=old.refresh_token,
                               refresh_expires_at=old.refresh_expires_at)

    # --- the resource server's view ----------------------------------------------------------------------

    def check_bearer(self, token: str | None) -> str:
        """'ok', 'expired' or 'invalid' for an access token presented to an API route."""
        with self._lock:
            issued = self._access.get(token or "")
        if issued is None:
            return "invalid"
        return "expired" if issued.expires_at <= time.time() else "ok"

    def scope_of(self, token: str | None) -> set[str]:
        """The scopes an access token was granted (TikTok separates them with commas, the others with spaces)."""
        with self._lock:
            issued = self._access.get(token or "")
        return set(re.split(r"[\s,]+", issued.scope.strip())) - {""} if issued else set()

    def subject_of(self, token: str | None) -> str | None:
        with self._lock:
            issued = self._access.get(token or "")
        return issued.subject if issued else None

    def expire_access_tokens(self) -> None:
        """Every issued access token expires now (refresh tokens stay valid)."""
        with self._lock:
            for token in self._access.values():
                token.expires_at = 0.0

    def expire_refresh_tokens(self) -> None:
        """Every issued refresh token reaches the end of its lifetime now."""
        with self._lock:
            for token in self._refresh.values():
                token.refresh_expires_at = 0.0

    def revoke(self, refresh_token: str) -> None:
        """The user removed the app's access (Google's and TikTok's revoke endpoints, or account settings)."""
        with self._lock:
            self._revoked.add(refresh_token)

    def grant(self, subject: str | None = None, scope: str = "") -> IssuedToken:
        """A token issued out of band (the "manual token entry" path and direct client tests)."""
        with self._lock:
            return self._issue(subject or self.subject, scope)
