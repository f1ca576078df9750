"""Errors raised by `broker/`; aiokafka's own errors are wrapped with `raise ... from exc`."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "DeliveryError",
    "EmbeddedBrokerError",
    "FencedError",
    "KafkaSecurityError",
    "TopicSetupError",
    "TransactionsUnavailableError",
]


class BrokerError(Exception):
    """Root of every error raised by `broker/`."""

    retriable: bool = False


class EmbeddedBrokerError(BrokerError):
    """The embedded Kafka-protocol broker could not be found, started or reached."""


class KafkaSecurityError(BrokerError):
    """TLS or SASL settings that cannot work, or a secured cluster refusing this client
    (bad certificate, failed login, missing ACL); the message says which."""


class TopicSetupError(BrokerError):
    """The topic catalogue could not be created or checked on the cluster."""


class DeliveryError(BrokerError):
    """A batch of output records was not acknowledged by the broker.

    The offsets of the input batch are then not committed, so the batch is processed again
    after a restart: at-least-once, never lost.
    """

    retriable = True


class TransactionsUnavailableError(BrokerError):
    """`exactly_once = on` was asked for, but the cluster does not support transactions."""


class FencedError(BrokerError):
    """Another worker now owns an input partition and has fenced this worker's
    transactional producer for it: this worker must stop writing for that partition."""
