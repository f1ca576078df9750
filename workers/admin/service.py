"""The admin process as a service: the API with its producer, audit log, writer and
quarantine service, and the configuration file's items seeded at start."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from workers.admin.actuals_service import ActualsService
from workers.admin.app import AdminApi
from workers.admin.audit import AuditLog
from workers.admin.decisions import DecisionLog
from workers.admin.quarantine import QuarantineService
from workers.admin.seed import seed_control
from workers.admin.writer import ControlWriter
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.runtime.supervise import SideTasks

__all__ = ["AdminService"]

log = logging.getLogger(__name__)


class AdminService:
    """The admin API with what it needs: a producer, the audit log, the writer, the
    decision log (answers per request) and the quarantine service (its metrics on
    `registry`; `clock` is injected by tests)."""

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaSettings,
        reader: ControlReader,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        topics = settings.topics
        self.reader = reader
        self.producer = BatchProducer(kafka)
        self.audit = AuditLog(kafka, topics.audit)
        self.writer = ControlWriter(self.producer, topics, reader, self.audit)
        self.quarantine = QuarantineService(
            kafka,
            topics,
            self.producer,
            self.writer,
            settings.codes,
            pending_max_s=settings.quarantine_pending_max_s,
            registry=registry,
            clock=clock,
        )
        self.decisions = DecisionLog(
            kafka,
            topics.user_responses,
            max_answers=settings.decisions_max_answers,
            max_age_s=settings.decisions_max_age_s,
            clock=clock,
        )
        # SEC H3.24: Service Requests per User, month, SRV and outcome, against forecasts.
        self.actuals = ActualsService(
            kafka, topics, self.producer, reader, registry=registry, clock=clock
        )
        self.api = AdminApi(
            reader=reader,
            writer=self.writer,
            audit=self.audit,
            bootstrap_token_sha256=settings.admin_token_sha256,
            quarantine=self.quarantine,
            decisions=self.decisions,
            actuals=self.actuals,
            registry=registry,
        )
        self._config = settings.config

    def watch(self, side_tasks: SideTasks) -> None:
        """Report the admin process's followers (quarantine log, audit trail) as side tasks."""
        side_tasks.watch("quarantine", lambda: self.quarantine.problem)
        side_tasks.watch("audit", lambda: self.audit.problem)
        side_tasks.watch("decisions", lambda: self.decisions.problem)
        side_tasks.watch("actuals", lambda: self.actuals.problem)

    async def start(self) -> None:
        """Connect, load the audit trail, and seed the configuration file's new items."""
        await self.producer.start()
        await self.audit.start()
        await self.quarantine.start()
        await self.decisions.start()
        await self.actuals.start()
        if self._config is not None:
            written = await seed_control(self._config, self.reader, self.writer)
            if written:
                log.info("configuration file: %d new items written to dcc.control", written)

    async def stop(self) -> None:
        """Disconnect (the actuals first: they write their last counts)."""
        await self.actuals.stop()
        await self.decisions.stop()
        await self.quarantine.stop()
        await self.audit.stop()
        await self.producer.stop()
