"""The one frozen Settings object, built in one place: the only reader of the environment.

Precedence: command-line flag, then `DCCGATE_*` environment variable, then default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from broker.errors import KafkaSecurityError
from broker.security import PROTOCOLS, SASL_MECHANISMS, KafkaSecurity, ssl_context
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.config.codes import ResponseCodes
from workers.config.configfile import ConfigFile, ConfigFileError, load_config_file
from workers.config.tokens import TOKEN_ENV, hash_token, token_from_env

__all__ = [
    "ADMIN_TOKEN_MIN_CHARS",
    "ENV_VARS",
    "QUARANTINE_PENDING_MAX_S",
    "SECURITY_ENV_VARS",
    "Settings",
    "SettingsError",
    "build_settings",
]

QUARANTINE_PENDING_MAX_S = 14 * 86_400
_QUARANTINE_RETENTION_S = 30 * 86_400  # retention.ms of dcc.sr.quarantine (broker/topics.py)
ADMIN_TOKEN_MIN_CHARS = 32
"""The shortest first operator token accepted: `secrets.token_urlsafe(32)` gives 43
characters (256 bits); tokens the API issues are longer still."""
_HOW_TO_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names it and the fix."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a dccgate process needs to know, validated."""

    bootstrap: str | None = None
    """Kafka bootstrap servers; None means start the embedded broker (`dccgate run`)."""
    kafka_port: int = 9092
    """Port of the embedded broker on 127.0.0.1."""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    topic_prefix: str = ""
    partitions: int = 6
    """Partitions of each data topic when dccgate creates it."""
    create_topics: bool = True
    replication_factor: int = 1
    """Replicas of each topic dccgate creates; 3 on a production cluster."""
    min_insync_replicas: int | None = None
    """`min.insync.replicas` of each topic dccgate creates (2 with 3 replicas); None
    leaves the broker's default."""
    log_level: str = "INFO"
    replay_pairs_per_user: int = 1_000_000
    """Targets whose last COUNTER is remembered per User for anti-replay (workers.duis)."""
    open_users: bool = False
    """Decide requests of any User in any role (the first release's behaviour): for demos
    only. Off, only Users registered on dcc.control, in their registered roles, pass."""
    max_poll_records: int = 2_000
    max_batches_in_flight: int = 2
    session_timeout_ms: int | None = None
    """Consumer-group session timeout; default 10 s, 2 s on the embedded broker."""
    heartbeat_interval_ms: int | None = None
    fetch_max_wait_ms: int | None = None
    exactly_once: str = "auto"
    """`auto`, `on` or `off`: write outputs and commit input offsets in one transaction
    (broker/transactions.py). auto: where the cluster supports transactions (Apache Kafka;
    never the embedded broker); on: refuse to start where it does not."""
    codes: ResponseCodes = msgspec.field(default_factory=ResponseCodes)
    admin_token: str | None = None
    """The first operator token (DCCGATE_TOKEN; DCCGATE_ADMIN_TOKEN, deprecated, if that is
    not set); never logged."""
    quarantine_pending_max_s: int = QUARANTINE_PENDING_MAX_S
    """Seconds a quarantined request may wait for the User's decision before it expires,
    answered deleted (Q5); at most the 30 days `dcc.sr.quarantine` keeps the request."""
    decisions_max_answers: int = 100_000
    """Most answers the admin process keeps for `GET /v1/decisions/{id}` (about 730 bytes
    each: docs/benchmarks.md); past it the least recently answered requests are forgotten."""
    decisions_max_age_s: int = 86_400
    """Seconds the admin process keeps a request's answers after its latest one."""
    deliver_deadline_s: int = 3_600
    """Seconds an answer may stay undelivered to its User's response_url (retried with
    backoff) before it goes to the dead-letter topic (`dccgate worker deliver`)."""
    deliver_timeout_ms: int = 10_000
    """Time limit of one delivery attempt (connect, send, answer)."""
    deliver_backoff_initial_ms: int = 200
    """Delay before the first retry of a failed delivery; doubles per retry, with jitter."""
    deliver_backoff_max_ms: int = 60_000
    """The longest delay between two delivery attempts."""
    deliver_queue_max_per_user: int = 1_000
    """Answers queued per User; when a User's queue is full the deliverer stops reading."""
    deliver_connections_per_host: int = 4
    """Concurrent connections to one response endpoint host."""
    deliver_ca_file: str | None = None
    """PEM file of CAs trusted for https response endpoints, added to the system's."""
    duis_host: str = "127.0.0.1"
    """Address of the DUIS ingress (`dccgate worker ingress`, and inside `dccgate run`)."""
    duis_port: int = 8081
    """Port of the DUIS ingress's web services (/api/v1/serviceD, serviceS, serviceT)."""
    duis_tls_cert: str | None = None
    """PEM certificate (chain) the ingress serves HTTPS with; without it, plain HTTP, which
    is allowed on a loopback address only."""
    duis_tls_key: str | None = None
    """PEM private key of duis_tls_cert."""
    duis_client_ca: str | None = None
    """PEM CAs whose client certificates the ingress requires (mutual TLS); None: none."""
    duis_answer_wait_ms: int = 2_000
    """How long a DUIS request waits for the router's decision before the synchronous
    answer is I99 "pending" (the decision then follows asynchronously)."""
    duis_max_request_bytes: int = 262_144
    """The largest DUIS request accepted (413 and E103 above it)."""
    config_path: str | None = None
    config: ConfigFile | None = None
    """The configuration file, loaded and validated (`--config` / DCCGATE_CONFIG)."""
    kafka_security: KafkaSecurity = KafkaSecurity()
    """TLS and SASL towards --bootstrap, from the DCCGATE_KAFKA_* variables only (no
    command-line flags: a password there would show in `ps`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.quarantine_pending_max_s <= _QUARANTINE_RETENTION_S:
            raise SettingsError(
                "DCCGATE_QUARANTINE_PENDING_MAX_S must be from 1 to 2592000 (30 days, how "
                "long dcc.sr.quarantine keeps a request; a release after that would find "
                f"nothing), got {self.quarantine_pending_max_s}"
            )
        _check_admin_token(self.admin_token)
        _check_deliver(self)
        _check_duis(self)
        if not 1 <= self.decisions_max_answers <= 10_000_000:
            raise SettingsError(
                "DCCGATE_DECISIONS_MAX_ANSWERS must be from 1 to 10000000 (about 730 bytes "
                f"of the admin process's memory each), got {self.decisions_max_answers}"
            )
        if not 60 <= self.decisions_max_age_s <= _QUARANTINE_RETENTION_S:
            raise SettingsError(
                "DCCGATE_DECISIONS_MAX_AGE_S must be from 60 to 2592000 (30 days), got "
                f"{self.decisions_max_age_s}"
            )

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"Settings(bootstrap={self.bootstrap!r}, topic_prefix={self.topic_prefix!r}, ...)"

    @property
    def admin_token_sha256(self) -> str | None:
        """SHA-256 of the first operator token, from the environment or the config file."""
        if self.admin_token:
            return hash_token(self.admin_token)
        return self.config.admin.token_sha256 if self.config else None

    @property
    def topics(self) -> Topics:
        """The topic names with the configured prefix."""
        return Topics.with_prefix(self.topic_prefix)

    def kafka(self, bootstrap: str, *, embedded: bool) -> KafkaSettings:
        """Client settings for `bootstrap`, tuned for the embedded broker if `embedded`."""
        ks = KafkaSettings(
            bootstrap=bootstrap,
            topic_prefix=self.topic_prefix,
            max_poll_records=self.max_poll_records,
            max_batches_in_flight=self.max_batches_in_flight,
        )
        if embedded:
            ks = ks.for_embedded()
        else:  # the embedded broker speaks PLAINTEXT only
            ks = msgspec.structs.replace(ks, security=self.kafka_security)
        overrides = {
            name: value
            for name in ("session_timeout_ms", "heartbeat_interval_ms", "fetch_max_wait_ms")
            if (value := getattr(self, name)) is not None
        }
        return msgspec.structs.replace(ks, **overrides) if overrides else ks


# flag name -> (environment variable, converter)
ENV_VARS: Mapping[str, str] = {
    "bootstrap": "DCCGATE_BOOTSTRAP",
    "kafka_port": "DCCGATE_KAFKA_PORT",
    "http_host": "DCCGATE_HTTP_HOST",
    "http_port": "DCCGATE_HTTP_PORT",
    "topic_prefix": "DCCGATE_TOPIC_PREFIX",
    "partitions": "DCCGATE_PARTITIONS",
    "replication_factor": "DCCGATE_REPLICATION_FACTOR",
    "min_insync_replicas": "DCCGATE_MIN_INSYNC_REPLICAS",
    "log_level": "DCCGATE_LOG_LEVEL",
    "admin_token": TOKEN_ENV,
    "config_path": "DCCGATE_CONFIG",
    "replay_pairs_per_user": "DCCGATE_REPLAY_PAIRS_PER_USER",
    "open_users": "DCCGATE_OPEN_USERS",
    "max_poll_records": "DCCGATE_MAX_POLL_RECORDS",
    "max_batches_in_flight": "DCCGATE_MAX_BATCHES_IN_FLIGHT",
    "session_timeout_ms": "DCCGATE_SESSION_TIMEOUT_MS",
    "heartbeat_interval_ms": "DCCGATE_HEARTBEAT_INTERVAL_MS",
    "fetch_max_wait_ms": "DCCGATE_FETCH_MAX_WAIT_MS",
    "exactly_once": "DCCGATE_EXACTLY_ONCE",
    "quarantine_pending_max_s": "DCCGATE_QUARANTINE_PENDING_MAX_S",
    "decisions_max_answers": "DCCGATE_DECISIONS_MAX_ANSWERS",
    "decisions_max_age_s": "DCCGATE_DECISIONS_MAX_AGE_S",
    "deliver_deadline_s": "DCCGATE_DELIVER_DEADLINE_S",
    "deliver_timeout_ms": "DCCGATE_DELIVER_TIMEOUT_MS",
    "deliver_backoff_initial_ms": "DCCGATE_DELIVER_BACKOFF_INITIAL_MS",
    "deliver_backoff_max_ms": "DCCGATE_DELIVER_BACKOFF_MAX_MS",
    "deliver_queue_max_per_user": "DCCGATE_DELIVER_QUEUE_MAX_PER_USER",
    "deliver_connections_per_host": "DCCGATE_DELIVER_CONNECTIONS_PER_HOST",
    "deliver_ca_file": "DCCGATE_DELIVER_CA_FILE",
    "duis_host": "DCCGATE_DUIS_HOST",
    "duis_port": "DCCGATE_DUIS_PORT",
    "duis_tls_cert": "DCCGATE_DUIS_TLS_CERT",
    "duis_tls_key": "DCCGATE_DUIS_TLS_KEY",
    "duis_client_ca": "DCCGATE_DUIS_CLIENT_CA",
    "duis_answer_wait_ms": "DCCGATE_DUIS_ANSWER_WAIT_MS",
    "duis_max_request_bytes": "DCCGATE_DUIS_MAX_REQUEST_BYTES",
}

# TLS and SASL: environment only, never flags (SECURITY_ENV_VARS -> KafkaSecurity field).
SECURITY_ENV_VARS: Mapping[str, str] = {
    "DCCGATE_KAFKA_SECURITY_PROTOCOL": "protocol",
    "DCCGATE_KAFKA_SSL_CA_FILE": "ca_file",
    "DCCGATE_KAFKA_SSL_CERT_FILE": "cert_file",
    "DCCGATE_KAFKA_SSL_KEY_FILE": "key_file",
    "DCCGATE_KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "DCCGATE_KAFKA_SASL_USERNAME": "sasl_username",
    "DCCGATE_KAFKA_SASL_PASSWORD": "sasl_password",
}
_PASSWORD_FILE_VAR = "DCCGATE_KAFKA_SASL_PASSWORD_FILE"  # noqa: S105 (a variable name)
_PASSWORD_MAX_BYTES = 4096

_INT_FIELDS = {
    "kafka_port",
    "http_port",
    "partitions",
    "replication_factor",
    "min_insync_replicas",
    "replay_pairs_per_user",
    "max_poll_records",
    "max_batches_in_flight",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "fetch_max_wait_ms",
    "quarantine_pending_max_s",
    "decisions_max_answers",
    "decisions_max_age_s",
    "deliver_deadline_s",
    "deliver_timeout_ms",
    "deliver_backoff_initial_ms",
    "deliver_backoff_max_ms",
    "deliver_queue_max_per_user",
    "deliver_connections_per_host",
    "duis_port",
    "duis_answer_wait_ms",
    "duis_max_request_bytes",
}
_BOOL_FIELDS = {"open_users"}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _check_admin_token(token: str | None) -> None:
    """Refuse a first operator token that is short or would not survive an HTTP header;
    the message never shows the token."""
    if not token:
        return
    if len(token) < ADMIN_TOKEN_MIN_CHARS:
        raise SettingsError(
            f"{TOKEN_ENV} is {len(token)} characters; an operator token must be at "
            f"least {ADMIN_TOKEN_MIN_CHARS}, and random. Make one with: {_HOW_TO_MAKE_ONE}"
        )
    if not all("!" <= c <= "~" for c in token):
        raise SettingsError(
            f"{TOKEN_ENV} holds a space, a control or a non-ASCII character, which "
            "an Authorization header cannot carry as is; use visible ASCII only. Make one "
            f"with: {_HOW_TO_MAKE_ONE}"
        )


def _security_from_env(env: Mapping[str, str]) -> KafkaSecurity:
    """KafkaSecurity from the DCCGATE_KAFKA_* variables; the password from
    DCCGATE_KAFKA_SASL_PASSWORD or the file named by DCCGATE_KAFKA_SASL_PASSWORD_FILE."""
    values: dict[str, str] = {
        field: raw for var, field in SECURITY_ENV_VARS.items() if (raw := env.get(var, ""))
    }
    protocol = values.get("protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(
            f"DCCGATE_KAFKA_SECURITY_PROTOCOL={values['protocol']!r} must be one of "
            f"{', '.join(PROTOCOLS)}"
        )
    values["protocol"] = protocol
    mechanism = values.get("sasl_mechanism", "SCRAM-SHA-512").upper()
    if mechanism not in SASL_MECHANISMS:
        raise SettingsError(
            f"DCCGATE_KAFKA_SASL_MECHANISM={values['sasl_mechanism']!r} must be one of "
            f"{', '.join(SASL_MECHANISMS)}"
        )
    values["sasl_mechanism"] = mechanism
    password_file = env.get(_PASSWORD_FILE_VAR, "")
    if password_file:
        if "sasl_password" in values:
            raise SettingsError(
                f"set DCCGATE_KAFKA_SASL_PASSWORD or {_PASSWORD_FILE_VAR}, not both"
            )
        values["sasl_password"] = _read_password(password_file)
    security = msgspec.convert(values, KafkaSecurity)
    problems = security.problems()
    if problems:
        raise SettingsError("Kafka TLS/SASL settings (DCCGATE_KAFKA_*): " + "; ".join(problems))
    if security.tls:
        try:
            ssl_context(security)  # a missing or broken file shows now, not at connect
        except KafkaSecurityError as exc:
            raise SettingsError(str(exc)) from None
    return security


def _read_password(path: str) -> str:
    """The first line of the password file (a trailing newline is not part of it)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_PASSWORD_MAX_BYTES + 1)
    except OSError as exc:
        raise SettingsError(
            f"{_PASSWORD_FILE_VAR}: cannot read {path}: {exc.strerror or exc}"
        ) from None
    if len(raw) > _PASSWORD_MAX_BYTES:
        raise SettingsError(f"{_PASSWORD_FILE_VAR}: {path} is over {_PASSWORD_MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{_PASSWORD_FILE_VAR}: {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password or any(line for line in lines[1:]):
        raise SettingsError(
            f"{_PASSWORD_FILE_VAR}: {path} must hold the password on one line, alone"
        )
    return password


_DELIVER_BOUNDS: Mapping[str, tuple[int, int, str]] = {
    "deliver_deadline_s": (1, 30 * 86_400, "seconds, up to 30 days"),
    "deliver_timeout_ms": (100, 300_000, "milliseconds, up to 5 minutes"),
    "deliver_backoff_initial_ms": (1, 3_600_000, "milliseconds, up to an hour"),
    "deliver_backoff_max_ms": (1, 3_600_000, "milliseconds, up to an hour"),
    "deliver_queue_max_per_user": (1, 1_000_000, "answers"),
    "deliver_connections_per_host": (1, 1_000, "connections"),
}


def _check_deliver(settings: Settings) -> None:
    """Refuse delivery settings that cannot work, naming the variable and the range."""
    for name, (low, high, unit) in _DELIVER_BOUNDS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise SettingsError(
                f"{ENV_VARS[name]} must be from {low} to {high} ({unit}), got {value}"
            )
    if settings.deliver_backoff_max_ms < settings.deliver_backoff_initial_ms:
        raise SettingsError(
            "DCCGATE_DELIVER_BACKOFF_MAX_MS must be at least DCCGATE_DELIVER_BACKOFF_INITIAL_MS"
        )
    ca_file = settings.deliver_ca_file
    if ca_file is not None and not Path(ca_file).is_file():
        raise SettingsError(
            f"DCCGATE_DELIVER_CA_FILE={ca_file!r} is not a readable file; give the PEM file "
            "of the CAs that sign the Users' response endpoints"
        )


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _check_duis(settings: Settings) -> None:
    """Refuse DUIS ingress settings that cannot work or would expose plain HTTP."""
    _port("--duis-port / DCCGATE_DUIS_PORT", settings.duis_port)
    if not 0 <= settings.duis_answer_wait_ms <= 60_000:
        raise SettingsError(
            "DCCGATE_DUIS_ANSWER_WAIT_MS must be from 0 to 60000 (ms a request waits for the "
            f"router's decision), got {settings.duis_answer_wait_ms}"
        )
    if not 1024 <= settings.duis_max_request_bytes <= 16 * 1024 * 1024:
        raise SettingsError(
            "DCCGATE_DUIS_MAX_REQUEST_BYTES must be from 1024 to 16777216, got "
            f"{settings.duis_max_request_bytes}"
        )
    cert, key = settings.duis_tls_cert, settings.duis_tls_key
    if (cert is None) != (key is None):
        raise SettingsError(
            "--duis-tls-cert and --duis-tls-key go together: give both (HTTPS) or neither "
            "(plain HTTP on a loopback address)"
        )
    if settings.duis_client_ca is not None and cert is None:
        raise SettingsError("--duis-client-ca needs HTTPS: give --duis-tls-cert and --duis-tls-key")
    for flag, path in (
        ("--duis-tls-cert", cert),
        ("--duis-tls-key", key),
        ("--duis-client-ca", settings.duis_client_ca),
    ):
        if path is not None and not Path(path).is_file():
            raise SettingsError(f"{flag} {path!r} is not a readable file")
    if cert is None and settings.duis_host not in _LOOPBACK:
        raise SettingsError(
            f"--duis-host {settings.duis_host!r} is not a loopback address: DUIS requests "
            "carry Users' signed commands, so plain HTTP is served on 127.0.0.1 only; give "
            "--duis-tls-cert and --duis-tls-key to serve HTTPS elsewhere"
        )


def _port(name: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a TCP port from 0 to 65535, got {value}")


def _from_env(name: str, var: str, raw: str) -> object:
    """The value of setting `name` from its environment variable `var`."""
    if name in _BOOL_FIELDS:
        if raw.lower() not in _BOOLS:
            raise SettingsError(f"{var}={raw!r} must be true or false (or 1 or 0)")
        return _BOOLS[raw.lower()]
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r} is not a whole number") from None
    return raw


def _token_by_its_old_name(values: dict[str, object], env: Mapping[str, str]) -> None:
    """The first operator token from DCCGATE_ADMIN_TOKEN, its deprecated name, with a
    warning, when DCCGATE_TOKEN is not set."""
    if "admin_token" not in values and (token := token_from_env(env)):
        values["admin_token"] = token


def build_settings(
    flags: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from command-line `flags` (None means not given) and the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, var in ENV_VARS.items():
        given = flags.get(name)
        if given is not None:
            values[name] = given
            continue
        raw = env.get(var)
        if raw is not None and raw != "":
            values[name] = _from_env(name, var, raw)
    _token_by_its_old_name(values, env)
    if flags.get("create_topics") is False:
        values["create_topics"] = False
    if values.get("config_path"):
        try:
            config = load_config_file(Path(str(values["config_path"])))
        except ConfigFileError as exc:
            raise SettingsError(str(exc)) from None
        values["config"] = config
        values["codes"] = config.codes
    values["kafka_security"] = _security_from_env(env)
    settings = Settings(**values)  # type: ignore[arg-type]
    _port("--kafka-port / DCCGATE_KAFKA_PORT", settings.kafka_port)
    _port("--http-port / DCCGATE_HTTP_PORT", settings.http_port)
    if settings.partitions < 1:
        raise SettingsError(
            f"--partitions / DCCGATE_PARTITIONS must be at least 1, got {settings.partitions}"
        )
    if settings.replication_factor < 1:
        raise SettingsError(
            "--replication-factor / DCCGATE_REPLICATION_FACTOR must be at least 1, "
            f"got {settings.replication_factor}"
        )
    if settings.min_insync_replicas is not None and not (
        1 <= settings.min_insync_replicas <= settings.replication_factor
    ):
        raise SettingsError(
            "DCCGATE_MIN_INSYNC_REPLICAS must be from 1 to the replication factor "
            f"({settings.replication_factor}), got {settings.min_insync_replicas}"
        )
    if settings.replay_pairs_per_user < 1:
        raise SettingsError(
            "DCCGATE_REPLAY_PAIRS_PER_USER must be at least 1 (targets whose last COUNTER "
            f"is remembered per User), got {settings.replay_pairs_per_user}"
        )
    if not 1 <= settings.max_poll_records <= 100_000:
        raise SettingsError(
            "--max-poll-records / DCCGATE_MAX_POLL_RECORDS must be from 1 to 100000, "
            f"got {settings.max_poll_records}"
        )
    if not 1 <= settings.max_batches_in_flight <= 16:
        raise SettingsError(
            "DCCGATE_MAX_BATCHES_IN_FLIGHT must be from 1 to 16, "
            f"got {settings.max_batches_in_flight}"
        )
    for name in ("session_timeout_ms", "heartbeat_interval_ms", "fetch_max_wait_ms"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise SettingsError(f"{ENV_VARS[name]} must be a positive number of ms, got {value}")
    if (
        settings.session_timeout_ms is not None
        and settings.heartbeat_interval_ms is not None
        and settings.heartbeat_interval_ms >= settings.session_timeout_ms
    ):
        raise SettingsError(
            "DCCGATE_HEARTBEAT_INTERVAL_MS must be well below DCCGATE_SESSION_TIMEOUT_MS "
            "(a third of it or less), or the group keeps rebalancing"
        )
    if settings.exactly_once not in ("auto", "on", "off"):
        raise SettingsError(
            f"--exactly-once / DCCGATE_EXACTLY_ONCE={settings.exactly_once!r} must be auto, "
            "on or off"
        )
    if settings.log_level.upper() not in _LEVELS:
        raise SettingsError(
            f"DCCGATE_LOG_LEVEL={settings.log_level!r} is not one of {sorted(_LEVELS)}"
        )
    if settings.bootstrap is not None and not settings.bootstrap.strip():
        raise SettingsError("--bootstrap / DCCGATE_BOOTSTRAP is empty; give HOST:PORT")
    if settings.kafka_security.tls and settings.bootstrap is None:
        raise SettingsError(
            f"DCCGATE_KAFKA_SECURITY_PROTOCOL={settings.kafka_security.protocol} needs "
            "--bootstrap / DCCGATE_BOOTSTRAP: the embedded broker speaks PLAINTEXT only"
        )
    return settings
