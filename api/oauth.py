"""``GET /api/oauth/callback/{provider}``: where Meta, Google or TikTok send the browser back after consent.

The answer is always a redirect to the Accounts page, carrying either the connected accounts' names or
a message to show; never a JSON error, since a person's browser, not a script, is on the other end.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from core.config import get_settings
from core.errors import StudioError
from core.publishing.oauth import abandon_authorization, consent_refused_message, sign_result
from core.publishing.social_accounts import connect_from_callback

_MAX_MESSAGE = 300  # characters of a message carried in the redirect's query string


def _back_to_accounts(**message: str) -> RedirectResponse:
    """The result in the Accounts page's query string, signed (``oauth_sig``): the page shows only a result
    this callback wrote, never the text of a crafted link."""
    accounts_page = f"{get_settings().public_url.rstrip('/')}/accounts"
    fields = {name: text[:_MAX_MESSAGE] for name, text in message.items()}
    query = urlencode({**fields, "oauth_sig": sign_result(fields)})
    return RedirectResponse(f"{accounts_page}?{query}", status_code=303)


async def get_oauth_callback(request: Request) -> Response:
    """Not token-protected: the one-time, hashed, expiring ``state`` is what proves the request came
    from a connection we started."""
    provider = request.path_params["provider"]
    params = request.query_params
    if code := params.get("error"):
        state_valid = await run_in_threadpool(abandon_authorization, provider, params.get("state", ""))
        return _back_to_accounts(oauth_error=consent_refused_message(
            code, params.get("error_description", ""), state_valid=state_valid))
    try:
        connected = await run_in_threadpool(connect_from_callback, provider,
                                            code=params.get("code", ""), state=params.get("state", ""))
    except StudioError as error:  # InvalidInput, OAuthError, CipherError…: messages safe to show
        return _back_to_accounts(oauth_error=str(error))
    return _back_to_accounts(connected=", ".join(account.label for account in connected))


def routes() -> list[Route]:
    return [Route("/api/oauth/callback/{provider}", get_oauth_callback, methods=["GET"])]
