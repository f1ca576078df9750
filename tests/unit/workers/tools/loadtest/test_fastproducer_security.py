"""The load test's librdkafka producer takes the same TLS/SASL settings as every client."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import BrokerError
from broker.security import KafkaSecurity
from tests.tlsca import make_ca
from workers.tools.loadtest.fastproducer import FastProducer


def test_librdkafka_accepts_the_mapped_sasl_ssl_settings(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    security = KafkaSecurity(
        protocol="SASL_SSL",
        ca_file=str(ca.pem),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="dccgate-ingress",
        sasl_password="not-used-here-1",
    )
    # librdkafka checks its configuration when the producer is made (no connection yet).
    producer = FastProducer("127.0.0.1:1", security=security)
    producer.close()


def test_a_ca_file_librdkafka_cannot_read_is_a_broker_error(tmp_path: Path) -> None:
    security = KafkaSecurity(protocol="SSL", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(BrokerError, match="cannot create a producer"):
        FastProducer("127.0.0.1:1", security=security)
