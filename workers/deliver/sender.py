"""POSTs one sr:Response document to a User's endpoint (the I/O edge of the deliverer).

aiohttp's client, with: a time limit per attempt; a bound on concurrent connections per
host; TLS certificates verified (the system's CAs, plus a CA file for private CAs);
redirects never followed (a redirect could send a User's answers elsewhere, so it counts
as a failed attempt); and at most 64 KiB of the endpoint's answer read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from workers.deliver.errors import DeliverySettingsError

__all__ = ["CONTENT_TYPE", "Failure", "FailureKind", "Sender"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/xml; charset=utf-8"
_ANSWER_READ_BYTES = 65_536
_TEXT_CHARS = 200

FailureKind = Literal["http_status", "redirect", "timeout", "tls", "connection", "invalid_url"]
"""Why an attempt failed: the `reason` label of `dccgate_delivery_failures_total`."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt: its kind and a sentence for logs and the dead letter."""

    kind: FailureKind
    text: str


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 3] + "..."


class Sender:
    """One HTTP client session for every endpoint.

    Parameters:
        timeout_s: time limit of one attempt (connect, send, answer).
        connections_per_host: concurrent connections to one host.
        ca_file: PEM file of extra trusted CAs for https endpoints; None: system CAs only.
        user_agent: the User-Agent header.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        connections_per_host: int,
        ca_file: str | None = None,
        user_agent: str = "dccgate-deliver",
    ) -> None:
        self._timeout_s = timeout_s
        self._per_host = connections_per_host
        # One semaphore per (scheme, host, port), as many slots as the connector allows
        # connections: an attempt's time limit starts once it has a connection slot, so
        # Users sharing a host queue for it without timing out while they wait.
        self._slots: dict[tuple[str, str, int | None], asyncio.Semaphore] = {}
        self._user_agent = user_agent
        self._ssl = ssl.create_default_context()  # verifies certificates and host names
        if ca_file is not None:
            try:
                self._ssl.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliverySettingsError(
                    f"DCCGATE_DELIVER_CA_FILE={ca_file!r} cannot be loaded ({exc}); give a "
                    "PEM file of CA certificates"
                ) from exc
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the session (inside the running event loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._per_host, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout per attempt
                headers={"User-Agent": self._user_agent},
                trust_env=False,  # no proxy from the environment: answers go where registered
            )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _slot(self, url: str) -> asyncio.Semaphore:
        try:
            parts = urlsplit(url)
            key = (parts.scheme, parts.hostname or "", parts.port)
        except ValueError:
            key = ("", url, None)  # aiohttp refuses it just after, with its own reason
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self._per_host)
        return slot

    async def post(self, url: str, document: bytes) -> Failure | None:
        """POST `document` to `url`; None when the endpoint answered 2xx, else the failure.
        Never raises but `CancelledError`."""
        session = self._session
        if session is None:
            raise RuntimeError("Sender.start() was not called")
        try:
            async with self._slot(url):
                async with asyncio.timeout(self._timeout_s):
                    async with session.post(
                        url,
                        data=document,
                        headers={"Content-Type": CONTENT_TYPE},
                        allow_redirects=False,
                    ) as resp:
                        await resp.content.read(_ANSWER_READ_BYTES)
                        status = resp.status
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            return Failure("timeout", f"no answer within the time limit ({_short(exc)})")
        except aiohttp.ClientSSLError as exc:
            return Failure("tls", _short(exc))
        except aiohttp.InvalidURL as exc:
            return Failure("invalid_url", _short(exc))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Failure("connection", _short(exc))
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            return Failure("redirect", f"HTTP {status}: redirects are not followed")
        return Failure("http_status", f"HTTP {status}")
