"""The one frozen Settings object, built in one place: the only reader of the environment.

Precedence: command-line flag, then `DCCGATE_*` environment variable, then default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.config.codes import ResponseCodes
from workers.config.configfile import ConfigFile, ConfigFileError, load_config_file
from workers.config.tokens import hash_token

__all__ = [
    "ADMIN_TOKEN_MIN_CHARS",
    "ENV_VARS",
    "QUARANTINE_PENDING_MAX_S",
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
    codes: ResponseCodes = msgspec.field(default_factory=ResponseCodes)
    admin_token: str | None = None
    """The first operator token (DCCGATE_ADMIN_TOKEN); never logged."""
    quarantine_pending_max_s: int = QUARANTINE_PENDING_MAX_S
    """Seconds a quarantined request may wait for the User's decision before it expires,
    answered deleted (Q5); at most the 30 days `dcc.sr.quarantine` keeps the request."""
    config_path: str | None = None
    config: ConfigFile | None = None
    """The configuration file, loaded and validated (`--config` / DCCGATE_CONFIG)."""

    def __post_init__(self) -> None:
        if not 1 <= self.quarantine_pending_max_s <= _QUARANTINE_RETENTION_S:
            raise SettingsError(
                "DCCGATE_QUARANTINE_PENDING_MAX_S must be from 1 to 2592000 (30 days, how "
                "long dcc.sr.quarantine keeps a request; a release after that would find "
                f"nothing), got {self.quarantine_pending_max_s}"
            )
        _check_admin_token(self.admin_token)

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
    "admin_token": "DCCGATE_ADMIN_TOKEN",
    "config_path": "DCCGATE_CONFIG",
    "replay_pairs_per_user": "DCCGATE_REPLAY_PAIRS_PER_USER",
    "open_users": "DCCGATE_OPEN_USERS",
    "max_poll_records": "DCCGATE_MAX_POLL_RECORDS",
    "max_batches_in_flight": "DCCGATE_MAX_BATCHES_IN_FLIGHT",
    "session_timeout_ms": "DCCGATE_SESSION_TIMEOUT_MS",
    "heartbeat_interval_ms": "DCCGATE_HEARTBEAT_INTERVAL_MS",
    "fetch_max_wait_ms": "DCCGATE_FETCH_MAX_WAIT_MS",
    "quarantine_pending_max_s": "DCCGATE_QUARANTINE_PENDING_MAX_S",
}

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
            f"DCCGATE_ADMIN_TOKEN is {len(token)} characters; an operator token must be at "
            f"least {ADMIN_TOKEN_MIN_CHARS}, and random. Make one with: {_HOW_TO_MAKE_ONE}"
        )
    if not all("!" <= c <= "~" for c in token):
        raise SettingsError(
            "DCCGATE_ADMIN_TOKEN holds a space, a control or a non-ASCII character, which "
            "an Authorization header cannot carry as is; use visible ASCII only. Make one "
            f"with: {_HOW_TO_MAKE_ONE}"
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
    if flags.get("create_topics") is False:
        values["create_topics"] = False
    if values.get("config_path"):
        try:
            config = load_config_file(Path(str(values["config_path"])))
        except ConfigFileError as exc:
            raise SettingsError(str(exc)) from None
        values["config"] = config
        values["codes"] = config.codes
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
    if settings.log_level.upper() not in _LEVELS:
        raise SettingsError(
            f"DCCGATE_LOG_LEVEL={settings.log_level!r} is not one of {sorted(_LEVELS)}"
        )
    if settings.bootstrap is not None and not settings.bootstrap.strip():
        raise SettingsError("--bootstrap / DCCGATE_BOOTSTRAP is empty; give HOST:PORT")
    return settings
