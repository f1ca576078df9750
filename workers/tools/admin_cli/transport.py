"""One HTTP request with the standard library, behind a Protocol tests can fake."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from workers.tools.admin_cli.errors import TransportError

__all__ = ["Transport", "urllib_transport"]


class Transport(Protocol):
    """Sends one HTTP request and returns (status, body); raises TransportError when there
    is no answer. Tests pass a fake; the command uses `urllib_transport`."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_s: float,
    ) -> tuple[int, bytes]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would resend the Authorization header to wherever a redirect points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def urllib_transport(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout_s: float,
) -> tuple[int, bytes]:
    """One request with the standard library: no redirects followed, errors as answers."""
    # run_admin lets only http:// and https:// through (_check_url).
    request = urllib.request.Request(  # noqa: S310
        url, data=body, headers=dict(headers), method=method
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:  # an answer with an error status
        with exc:
            location = exc.headers.get("Location") if 300 <= exc.code < 400 else None
            if location:
                return exc.code, json.dumps({"error": f"redirected to {location}"}).encode()
            return exc.code, bytes(exc.read())
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        raise TransportError(str(exc.reason), timed_out=timed_out) from exc
    except TimeoutError as exc:
        raise TransportError("timed out", timed_out=True) from exc
    except http.client.HTTPException as exc:
        raise TransportError(f"not an HTTP answer ({exc!r})", not_http=True) from exc
    except OSError as exc:
        raise TransportError(str(exc) or type(exc).__name__) from exc
