"""Errors raised by `broker/`; aiokafka's own errors are wrapped with `raise ... from exc`."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "DeliveryError",
    "EmbeddedBrokerError",
    "TopicSetupError",
]


class BrokerError(Exception):
    """Root of every error raised by `broker/`."""

    retriable: bool = False


class EmbeddedBrokerError(BrokerError):
    """The embedded Kafka-protocol broker could not be found, started or reached."""


class TopicSetupError(BrokerError):
    """The topic catalogue could not be created or checked on the cluster."""


class DeliveryError(BrokerError):
    """A batch of output records was not acknowledged by the broker.

    The offsets of the input batch are then not committed, so the batch is processed again
    after a restart: at-least-once, never lost.
    """

    retriable = True
