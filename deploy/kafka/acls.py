"""The minimal Kafka ACLs of each dccgate process, as a table, as kafka-acls.sh commands, or
applied to a cluster.

    .venv/bin/python deploy/kafka/acls.py table    [--topic-prefix P]
    .venv/bin/python deploy/kafka/acls.py commands [--topic-prefix P] [--principal ROLE=User:NAME]
    .venv/bin/python deploy/kafka/acls.py apply --bootstrap HOST:PORT [--topic-prefix P]
                                                [--principal ROLE=User:NAME ...] [--create-topics]

`table` prints the Markdown table of deploy/kafka/ACLS.md (which principal reads and writes
which topic and consumer group). `commands` prints the same ACLs as `kafka-acls.sh`
invocations for an operator who prefers Kafka's own tool. `apply` creates them on the
cluster (and, with --create-topics, the contract's topics first), connecting as a super user
with the DCCGATE_KAFKA_* settings of the environment (deploy/README.md, "TLS and SASL"):
the password is never a flag. Each role's principal is `User:dccgate-ROLE` unless
--principal says otherwise (`User:admin` is the local cluster's super user, deploy/kafka/
kafka.py --secure, so the admin process has a principal of its own). Creating an ACL that
exists is a no-op, so `apply` may run again.

ROLES below is the one source of what each process needs; tests/integration/
test_kafka_security.py runs the router, the alert worker and the admin process with only
these ACLs, and checks that a principal without a write ACL on dcc.sr.inbound is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere, with the project's venv
    sys.path.insert(0, str(REPO))

from broker import topics as t  # noqa: E402
from broker.settings import KafkaSettings  # noqa: E402

# (principal, resource type, resource name, pattern type, operation): one ALLOW ACL.
Entry = tuple[str, int, str, int, int]

# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP, TRANSACTIONAL_ID = 2, 3, 5
LITERAL, PREFIXED = 3, 4
READ, WRITE = 3, 4
_ALLOW = 3
_RESOURCE_NAMES = {TOPIC: "topic", GROUP: "group", TRANSACTIONAL_ID: "transactional-id"}
# The exactly-once probe's transactional ids (broker/transactions.py PROBE_ID_PREFIX):
# `<topic prefix>dccgate.probe.<random>`, granted per deployment like the others.
PROBE_TRANSACTIONAL_IDS = "dccgate.probe.*"
_OPERATION_NAMES = {READ: "Read", WRITE: "Write"}


@dataclass(frozen=True)
class Role:
    """One kind of process and what it may do. Topics are the contract's names (the
    deployment's prefix is added); `group` is a consumer group and `transactional_ids` the
    transactional ids of its exactly-once producers (WRITE), each a literal name, or a
    prefix if it ends with `*`. READ and WRITE each imply DESCRIBE in Kafka."""

    name: str
    what: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group: str | None = None
    transactional_ids: tuple[str, ...] = ()
    notes: str = ""


ROLES: tuple[Role, ...] = (
    Role(
        "router",
        "`dccgate worker router`",
        reads=(t.SR_INBOUND, t.CONTROL, t.LOAD, t.SR_QUARANTINE, t.STATE_ROUTER),
        writes=(
            t.SR_OUTBOUND,
            t.USER_RESPONSES,
            t.SR_QUARANTINE,
            t.DEADLETTER,
            t.STATE_ROUTER,
            t.LOAD,
        ),
        group="dccgate-router",
        # broker/transactions.py: `<group>.<input topic>.<partition>`, and the probe.
        transactional_ids=("dccgate-router.*", PROBE_TRANSACTIONAL_IDS),
        notes="reads dcc.sr.quarantine for releases, dcc.load for the other routers' load, "
        "its changelog to restore ADT windows and replay state",
    ),
    Role(
        "alerts",
        "`dccgate worker alerts`",
        reads=(t.ALERTS_INBOUND, t.CONTROL, t.SR_OUTBOUND, t.STATE_ALERTS),
        writes=(t.ALERTS_OUTBOUND, t.DEADLETTER, t.STATE_ALERTS),
        group="dccgate-alerts",
        transactional_ids=("dccgate-alerts.*", PROBE_TRANSACTIONAL_IDS),
        notes="reads dcc.sr.outbound for firmware activations (MP102), its changelog to "
        "restore storms",
    ),
    Role(
        "admin",
        "`dccgate worker admin` (the admin API)",
        reads=(t.CONTROL, t.AUDIT, t.SR_QUARANTINE, t.USER_RESPONSES, t.STATE_ACTUALS),
        writes=(
            t.CONTROL,
            t.AUDIT,
            t.SR_QUARANTINE,
            t.SR_OUTBOUND,
            t.USER_RESPONSES,
            t.STATE_ACTUALS,
        ),
        # workers/admin/quarantine_txn.py: one id per deployment, and the probe.
        transactional_ids=("dccgate-quarantine", PROBE_TRANSACTIONAL_IDS),
        notes="no consumer group: it follows its topics without one; writes released "
        "requests and their answers, and the actuals (H3.24) it counts",
    ),
    Role(
        "ingress",
        "the DCC Users' front end, `dccgate send`",
        reads=(t.USER_RESPONSES, t.ALERTS_OUTBOUND, t.DEADLETTER),
        writes=(t.SR_INBOUND,),
        group="ingress-*",
        notes="the only principal besides super users that may write Service Requests",
    ),
    Role(
        "dsp",
        "the device side (comms hubs' adapter)",
        reads=(t.SR_OUTBOUND,),
        writes=(t.ALERTS_INBOUND,),
        group="dsp-*",
        notes="takes forwarded requests, writes meters' alerts",
    ),
)


def default_principal(role: str) -> str:
    return f"User:dccgate-{role}"


def acl_entries(prefix: str, principals: dict[str, str]) -> list[tuple[str, int, str, int, int]]:
    """(principal, resource type, resource name, pattern type, operation) of every ACL."""
    entries = []
    for role in ROLES:
        principal = principals.get(role.name, default_principal(role.name))
        for op, names in ((READ, role.reads), (WRITE, role.writes)):
            entries.extend((principal, TOPIC, prefix + name, LITERAL, op) for name in names)
        if role.group is not None:
            entries.append((principal, GROUP, *_pattern(prefix, role.group), READ))
        for tid in role.transactional_ids:
            entries.append((principal, TRANSACTIONAL_ID, *_pattern(prefix, tid), WRITE))
    return entries


def _pattern(prefix: str, name: str) -> tuple[str, int]:
    """(resource name, pattern type) of `name`: a prefix if it ends with `*`."""
    if name.endswith("*"):
        return prefix + name[:-1], PREFIXED
    return prefix + name, LITERAL


def _shown(prefix: str, name: str) -> str:
    resource, pattern = _pattern(prefix, name)
    return f"`{resource}`" + (" (prefix)" if pattern == PREFIXED else "")


def table(prefix: str = "") -> str:
    """The Markdown table of deploy/kafka/ACLS.md."""
    rows = [
        "| principal | process | reads (Read) | writes (Write) | consumer group (Read) "
        "| transactional ids (Write) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for role in ROLES:
        group = "—" if role.group is None else _shown(prefix, role.group)
        tids = ", ".join(_shown(prefix, tid) for tid in role.transactional_ids)
        rows.append(
            f"| `{default_principal(role.name)}` | {role.what} | "
            + ", ".join(f"`{prefix}{n}`" for n in role.reads)
            + " | "
            + ", ".join(f"`{prefix}{n}`" for n in role.writes)
            + f" | {group} | {tids or '—'} | {role.notes} |"
        )
    return "\n".join(rows)


def commands(prefix: str, principals: dict[str, str], bootstrap: str) -> list[str]:
    """The ACLs as kafka-acls.sh command lines (`--command-config admin.properties` holds
    the super user's TLS/SASL client settings)."""
    lines = []
    for principal, rtype, name, pattern, op in acl_entries(prefix, principals):
        argv = [
            "kafka-acls.sh",
            "--bootstrap-server",
            bootstrap,
            "--command-config",
            "admin.properties",
            "--add",
            "--allow-principal",
            principal,
            "--operation",
            _OPERATION_NAMES[op],
            f"--{_RESOURCE_NAMES[rtype]}",
            name,
        ]
        if pattern == PREFIXED:
            argv += ["--resource-pattern-type", "prefixed"]
        lines.append(shlex.join(argv))
    return lines


async def apply(kafka: KafkaSettings, entries: list[Entry]) -> None:
    """Create the ACLs `entries` on the cluster of `kafka` (whose principal must be a super
    user, or hold ALTER on the cluster)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest

    from broker.errors import BrokerError

    client = AIOKafkaClient(**kafka.admin_kwargs())
    try:
        await client.bootstrap()
        node = client.get_random_node()
        for principal, rtype, name, pattern, op in entries:
            request = CreateAclsRequest(rtype, name, pattern, principal, "*", op, _ALLOW)
            response = await client.send(node, request)
            for result in response.creation_responses:
                code, message = result[0], result[1]
                if code != 0:
                    raise BrokerError(
                        f"creating ACL {principal} {_OPERATION_NAMES[op]} "
                        f"{_RESOURCE_NAMES[rtype]} {name} failed: Kafka error {code} "
                        f"{message!r} (is the principal in DCCGATE_KAFKA_SASL_USERNAME a "
                        "super user?)"
                    )
    finally:
        await client.close()


async def _apply_from_env(
    bootstrap: str, prefix: str, principals: dict[str, str], *, create_topics: bool
) -> int:
    """`apply` as the command runs it: settings from the DCCGATE_* environment."""
    from broker.security import check_access
    from broker.topics import ensure_topics
    from workers.config.settings import build_settings

    settings = build_settings({"bootstrap": bootstrap, "topic_prefix": prefix or None})
    kafka = settings.kafka(bootstrap, embedded=False)
    # A failed TLS handshake or login in one sentence (broker/security.py).
    await check_access(
        bootstrap, kafka.security, client_id="dccgate-acls", timeout_ms=kafka.request_timeout_ms
    )
    if create_topics:
        specs = settings.topics.specs(
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
        created = await ensure_topics(kafka, specs)
        print(f"topics created: {', '.join(created) or 'none (all there)'}")
    entries = acl_entries(prefix, principals)
    await apply(kafka, entries)
    return len(entries)


def _principals(pairs: list[str]) -> dict[str, str]:
    found = {}
    roles = {r.name for r in ROLES}
    for pair in pairs:
        role, sep, principal = pair.partition("=")
        if not sep or role not in roles or not principal.startswith("User:"):
            raise SystemExit(
                f"acls.py: --principal {pair!r} must be ROLE=User:NAME, ROLE one of "
                f"{', '.join(sorted(roles))}"
            )
        found[role] = principal
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="acls.py", description=__doc__.split("\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("table", "commands", "apply"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--topic-prefix", default="", help="the deployment's topic prefix")
        if name == "table":
            continue
        cmd.add_argument(
            "--principal",
            action="append",
            default=[],
            metavar="ROLE=User:NAME",
            help="the principal of a role (default User:dccgate-ROLE)",
        )
        cmd.add_argument(
            "--bootstrap", required=name == "apply", default="HOST:PORT", help="the cluster"
        )
        if name == "apply":
            cmd.add_argument(
                "--create-topics",
                action="store_true",
                help="create the contract's topics first (DCCGATE_PARTITIONS etc.)",
            )
    args = parser.parse_args(argv)
    if args.command == "table":
        print(table(args.topic_prefix))
        return 0
    principals = _principals(args.principal)
    if args.command == "commands":
        print("\n".join(commands(args.topic_prefix, principals, args.bootstrap)))
        return 0
    from broker.errors import BrokerError
    from broker.security import KafkaClientError
    from workers.config.settings import SettingsError

    try:
        count = asyncio.run(
            _apply_from_env(
                args.bootstrap,
                args.topic_prefix,
                principals,
                create_topics=args.create_topics,
            )
        )
    except (BrokerError, SettingsError, KafkaClientError) as exc:
        print(f"acls.py: {exc}", file=sys.stderr)
        return 1
    print(f"applied {count} ACLs to {args.bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
