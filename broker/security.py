"""How dccgate authenticates to a secured Kafka cluster: TLS and SASL, in one place.

`KafkaSecurity` holds the operator's choice (protocol, CA file, client certificate and key,
SASL mechanism, user name and password); `client_kwargs()` turns it into the keyword
arguments of every aiokafka client the project creates, with the one `ssl.SSLContext`
built here; `librdkafka_config()` maps the same choice to librdkafka's names for the load
test's producer. `explain()` turns the errors a secured cluster gives (a wrong password, an
unknown CA, a missing ACL) into one sentence an operator can act on, and `check_access()`
makes one connection at start-up so those errors show before anything else happens.

The password is never printed: `repr()` hides it, and no error message includes it.
"""

from __future__ import annotations

import functools
import logging
import ssl
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from broker.errors import KafkaSecurityError

__all__ = [
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "KafkaClientError",
    "KafkaSecurity",
    "check_access",
    "client_kwargs",
    "explain",
    "librdkafka_config",
    "ssl_context",
]

Protocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "PLAIN"]
PROTOCOLS: Final[tuple[str, ...]] = ("PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS: Final[tuple[str, ...]] = ("SCRAM-SHA-512", "PLAIN")
# What `except` clauses outside broker/ catch to hand an aiokafka error to explain().
KafkaClientError = KafkaError


class KafkaSecurity(msgspec.Struct, frozen=True, kw_only=True):
    """The security settings of a Kafka client (docs: deploy/README.md, "TLS and SASL").

    PLAINTEXT (the default) uses none of the other fields. SSL encrypts and checks the
    broker's certificate against `ca_file` (or the system's CAs); with `cert_file` and
    `key_file` it also presents a client certificate (mutual TLS). SASL_SSL adds a SASL
    login (`sasl_mechanism`, `sasl_username`, `sasl_password`) over the same TLS.
    """

    protocol: Protocol = "PLAINTEXT"
    ca_file: str | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; None: the system's."""
    cert_file: str | None = None
    """PEM client certificate (chain) for mutual TLS; needs `key_file`."""
    key_file: str | None = None
    """PEM private key of `cert_file`, unencrypted (protect it with file permissions)."""
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = None
    """Never printed; read from a file or the environment, never from the command line."""

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        if self.protocol == "PLAINTEXT":
            return "KafkaSecurity(protocol='PLAINTEXT')"
        sasl = (
            f", sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r}"
            if self.protocol == "SASL_SSL"
            else ""
        )
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, ca_file={self.ca_file!r}, "
            f"cert_file={self.cert_file!r}{sasl})"
        )

    @property
    def tls(self) -> bool:
        return self.protocol != "PLAINTEXT"

    @property
    def sasl(self) -> bool:
        return self.protocol == "SASL_SSL"

    def problems(self) -> list[str]:
        """What is missing or contradictory, one sentence each (empty: usable)."""
        found = []
        if self.protocol not in PROTOCOLS:
            found.append(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            found.append(
                f"SASL mechanism {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
        if (self.cert_file is None) != (self.key_file is None):
            found.append("a client certificate needs both the certificate file and its key file")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            found.append("CA, certificate and key files need protocol SSL or SASL_SSL")
        if self.sasl:
            if not self.sasl_username:
                found.append("SASL_SSL needs a SASL user name")
            if not self.sasl_password:
                found.append("SASL_SSL needs a SASL password (from a file or the environment)")
        elif self.sasl_username or self.sasl_password:
            found.append("a SASL user name or password needs protocol SASL_SSL")
        return found


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """The TLS context of `security` (built once per set of files): TLS 1.2 or newer, the
    broker's certificate checked against the CA and its host name against the address."""
    return _context(security.ca_file, security.cert_file, security.key_file)


@functools.cache
def _context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except FileNotFoundError:
        raise KafkaSecurityError(f"the Kafka CA file {ca_file} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KafkaSecurityError(
            f"the Kafka CA file {ca_file} holds no usable PEM certificate ({exc})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        for path in (cert_file, key_file):
            if path is None or not Path(path).is_file():
                raise KafkaSecurityError(f"the Kafka client certificate file {path} does not exist")
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise KafkaSecurityError(
                f"cannot load the Kafka client certificate {cert_file} with key {key_file}: "
                f"{exc} (both PEM, the key unencrypted and matching the certificate)"
            ) from None
    return context


def client_kwargs(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    if not security.tls:
        return {"security_protocol": "PLAINTEXT"}
    kwargs: dict[str, Any] = {
        "security_protocol": security.protocol,
        "ssl_context": ssl_context(security),
    }
    if security.sasl:
        kwargs |= {
            "sasl_mechanism": security.sasl_mechanism,
            "sasl_plain_username": security.sasl_username,
            "sasl_plain_password": security.sasl_password,
        }
    return kwargs


def librdkafka_config(security: KafkaSecurity) -> dict[str, str]:
    """The same settings under librdkafka's names (confluent_kafka's Producer config)."""
    if not security.tls:
        return {"security.protocol": "plaintext"}
    config = {
        "security.protocol": security.protocol.lower(),
        "ssl.endpoint.identification.algorithm": "https",
    }
    if security.ca_file:
        config["ssl.ca.location"] = security.ca_file
    if security.cert_file and security.key_file:
        config["ssl.certificate.location"] = security.cert_file
        config["ssl.key.location"] = security.key_file
    if security.sasl:
        config["sasl.mechanism"] = security.sasl_mechanism
        config["sasl.username"] = security.sasl_username or ""
        config["sasl.password"] = security.sasl_password or ""
    return config


def explain(exc: BaseException, security: KafkaSecurity, bootstrap: str) -> str | None:
    """One sentence saying why a secured cluster refused, or None if `exc` is not about
    security. The cause is looked for along `exc`'s chain (aiokafka wraps TLS errors)."""
    who = (
        f"SASL user {security.sasl_username!r} ({security.sasl_mechanism})"
        if security.sasl
        else "this client"
    )
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            where = security.ca_file or "the system's CA store"
            return (
                f"TLS to Kafka at {bootstrap} failed: the broker's certificate was not "
                f"accepted ({cause.verify_message}); check that {where} holds the CA that "
                "signed it and that the certificate names the address in --bootstrap"
            )
        if isinstance(cause, (SaslAuthenticationFailed, AuthenticationFailedError)):
            return (
                f"Kafka at {bootstrap} refused the login of {who}: wrong user name or "
                "password, or the mechanism is not enabled for that user on the broker"
            )
        if isinstance(cause, UnsupportedSaslMechanismError):
            return f"Kafka at {bootstrap} does not offer the SASL mechanism of {who}"
        if isinstance(cause, ssl.SSLError):
            return (
                f"TLS to Kafka at {bootstrap} failed ({cause.reason or cause}): is that a "
                "TLS listener, and does it accept this client's certificate?"
            )
        if isinstance(cause, TopicAuthorizationFailedError):
            return _acl(who, bootstrap, "a topic", cause)
        if isinstance(cause, GroupAuthorizationFailedError):
            return _acl(who, bootstrap, "a consumer group", cause)
        if isinstance(cause, TransactionalIdAuthorizationFailed):
            return _acl(who, bootstrap, "a transactional id", cause)
        if isinstance(cause, ClusterAuthorizationFailedError):
            return _acl(who, bootstrap, "the cluster", cause)
    return None


def _acl(who: str, bootstrap: str, what: str, cause: BaseException) -> str:
    detail = str(cause).strip()
    return (
        f"Kafka at {bootstrap} refused {who} access to {what}: the principal has no ACL for "
        f"it ({detail}); see deploy/kafka/ACLS.md for the ACLs each process needs"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def check_access(
    bootstrap: str, security: KafkaSecurity, *, client_id: str, timeout_ms: int
) -> None:
    """Connect once and ask for metadata; raise KafkaSecurityError with the reason (see
    explain()) if a TLS handshake or SASL login fails. Does nothing for PLAINTEXT: there
    the first real client reports an unreachable broker itself."""
    if not security.tls:
        return
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id=f"{client_id}-check",
        request_timeout_ms=timeout_ms,
        **client_kwargs(security),
    )
    try:
        await _bootstrap_with_cause(client)
    except KafkaError as exc:
        reason = explain(exc, security, bootstrap)
        raise KafkaSecurityError(
            reason or f"cannot connect to Kafka at {bootstrap} over {security.protocol}: {exc}"
        ) from None
    finally:
        await client.close()


async def _bootstrap_with_cause(client: AIOKafkaClient) -> None:
    """client.bootstrap(), but with the reason of a failed connection attached: aiokafka
    logs the TLS or SASL error of each address and raises a bare "Unable to bootstrap".
    Those log lines are held back here: the caller's message says it better."""
    caught: list[BaseException] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            caught.append(record.exc_info[1])
        caught.extend(a for a in _args(record.args) if isinstance(a, BaseException))
        return record.levelno < logging.ERROR

    loggers = [logging.getLogger("aiokafka"), logging.getLogger("aiokafka.conn")]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        await client.bootstrap()
    except KafkaConnectionError as exc:
        if caught:
            raise exc from caught[-1]
        raise
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def _args(args: object) -> tuple[object, ...]:
    if isinstance(args, tuple):
        return args
    if isinstance(args, dict):
        return tuple(args.values())
    return (args,)
