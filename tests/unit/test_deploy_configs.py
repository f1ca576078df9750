"""deploy/ is checked by the tools that will read it: promtool, amtool, and YAML/JSON parsers.

Docker is not available on the build machines, so the image and the compose stack are not
started here; their files must at least parse. That they name only metrics the services
export is checked against a running gateway (tests/integration/test_deploy_metrics.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from broker.topics import TOPIC_NAMES, Topics
from tests.deploy_docs import (
    declared_metrics,
    documented_dashboard_rows,
    documented_metrics,
    documented_rules,
    documented_topics,
    readme,
)
from tests.deploy_metrics import family_types, metrics_used_by_deploy
from workers.cli import _parser
from workers.gateway import WORKERS
from workers.runtime.metrics import CommonMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI; `make test` installs Debian's prometheus")
        pytest.skip(f"{name} not installed (Debian packages prometheus, prometheus-alertmanager)")
    return path


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.y*ml")) + sorted(DEPLOY.rglob("*.json"))
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        else:
            list(yaml.safe_load_all(text))


def test_dashboards_and_rules_name_metrics() -> None:
    # That each of them is exported is checked against a running gateway's /metrics page:
    # tests/integration/test_deploy_metrics.py.
    assert len(metrics_used_by_deploy()) > 20


def test_prometheus_config_rules_and_rule_tests() -> None:
    promtool = _tool("promtool")
    _run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    _run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "dccgate.rules.yml"))
    _run(promtool, "test", "rules", str(DEPLOY / "prometheus" / "tests" / "dccgate.rules.test.yml"))


def test_alertmanager_config() -> None:
    amtool = _tool("amtool")
    _run(amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))


# --- deploy/ runs the whole product ------------------------------------------------------


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def _dccgate_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the dccgate image (`<<: *dccgate`)."""
    return {
        name: svc
        for name, svc in _compose()["services"].items()
        if str(svc.get("image", "")).startswith("dccgate")
    }


def _k8s(kind: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind]
    return docs


def _worker(argv: list[str]) -> str:
    """The worker name of `dccgate worker NAME ...` (argv after the entry point)."""
    assert argv[:1] == ["worker"], f"not a `dccgate worker` command: {argv}"
    assert argv[1] in WORKERS, f"{argv[1]!r} is not a worker; the CLI has {WORKERS}"
    return str(argv[1])


def test_the_cli_has_the_workers_deploy_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for name in WORKERS:
        assert _parser().parse_args(["worker", name]).service == name
    with pytest.raises(SystemExit):
        _parser().parse_args(["worker", "quarantine"])  # no such worker: the admin has it
    assert "invalid choice" in capsys.readouterr().err


def test_compose_runs_every_worker_with_a_health_check_and_resources() -> None:
    services = _dccgate_services()
    workers = {name: _worker(svc["command"]) for name, svc in services.items()}
    assert set(workers.values()) == set(WORKERS), workers
    for name, svc in services.items():
        check = " ".join(svc["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/healthz" in check, name
        assert "--http-port" in svc["command"]
        assert svc["command"][svc["command"].index("--http-port") + 1] == "8080", name
        assert svc["environment"]["DCCGATE_HTTP_HOST"] == "0.0.0.0", name
        resources = svc["deploy"]["resources"]
        assert resources["limits"]["memory"] == resources["reservations"]["memory"], name
        assert "cpus" in resources["reservations"], name
        assert svc["stop_grace_period"] == "35s", name
    # The admin process gets its token from a secret, and only the admin process.
    [admin] = [name for name, worker in workers.items() if worker == "admin"]
    script = " ".join(services[admin]["entrypoint"])
    assert "DCCGATE_ADMIN_TOKEN" in script
    assert 'exec dccgate "$$@"' in script  # compose turns $$ into $
    secret = services[admin]["secrets"][0]
    assert f"/run/secrets/{secret}" in script
    assert _compose()["secrets"][secret]["file"] == "./secrets/admin-token"
    for name, svc in services.items():
        assert "DCCGATE_ADMIN_TOKEN" not in svc["environment"], name


def test_the_compose_admin_entrypoint_hands_the_token_to_dccgate(tmp_path: Path) -> None:
    # Run the admin service's entrypoint script with sh, a token file and `env` for dccgate.
    admin = next(s for s in _dccgate_services().values() if s["command"][1] == "admin")
    shell, flag, script, zero = admin["entrypoint"]
    token = tmp_path / "token"
    token.write_text("x" * 43 + "\n")
    script = (
        script.replace("$$", "$")
        .replace(f"/run/secrets/{admin['secrets'][0]}", str(token))
        .replace("exec dccgate", "exec env")
    )
    done = subprocess.run(
        [shell, flag, script, zero, "-0"], capture_output=True, timeout=10, check=True
    )
    assert b"DCCGATE_ADMIN_TOKEN=" + b"x" * 43 in done.stdout.split(b"\0")
    token.unlink()
    missing = subprocess.run(
        [shell, flag, script, zero], capture_output=True, timeout=10, check=False
    )
    assert missing.returncode != 0
    assert str(token).encode() in missing.stderr


def test_prometheus_scrapes_every_compose_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "dccgate"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:8080" for name in _dccgate_services()}


def test_kubernetes_runs_every_worker_with_probes_resources_and_a_service() -> None:
    deployments = _k8s("Deployment")
    services = _k8s("Service")
    workers = {}
    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        [container] = pod["containers"]
        workers[name] = _worker(container["args"])
        # The DUIS ingress also serves its web services on a port of their own (issue #16).
        extra = (
            [{"name": "duis", "containerPort": 8443, "protocol": "TCP"}]
            if _worker(container["args"]) == "ingress"
            else []
        )
        assert container["ports"] == [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            *extra,
        ]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert resources["limits"]["memory"] == resources["requests"]["memory"], name
        assert pod["terminationGracePeriodSeconds"] == 35, name
        assert {"configMapRef": {"name": "dccgate-config"}} in container["envFrom"], name
        # A Service selects the pods, on port http, annotated for scraping.
        labels = dep["spec"]["template"]["metadata"]["labels"]
        [svc] = [s for s in services if s["spec"]["selector"].items() <= labels.items()]
        assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
        assert svc["metadata"]["annotations"]["prometheus.io/port"] == "8080", name
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http"] + [e["name"] for e in extra], (
            name
        )
        token = [e for e in container.get("env", []) if e["name"] == "DCCGATE_ADMIN_TOKEN"]
        if workers[name] == "admin":
            assert token[0]["valueFrom"]["secretKeyRef"] == {
                "name": "dccgate-admin",
                "key": "token",
            }
            assert dep["spec"]["replicas"] == 1
            assert dep["spec"]["strategy"]["type"] == "Recreate"
        else:
            assert token == [], name
    assert sorted(workers.values()) == sorted(WORKERS), workers
    assert len(services) == len(deployments)
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


# --- deploy/README.md lists what is really there --------------------------------------------


def test_readme_topic_table_is_the_code_catalogue() -> None:
    expected = {}
    for spec in Topics.with_prefix("").specs(partitions=7, min_insync_replicas=None):
        partitions = "`DCCGATE_PARTITIONS`" if spec.partitions == 7 else str(spec.partitions)
        configs = ", ".join(f"`{k}={v}`" for k, v in sorted(spec.configs.items()))
        expected[spec.name] = (partitions, configs or "—")
    documented = {
        topic: (partitions, re.sub(r" \([^)]*\)", "", configs))
        for topic, (partitions, configs) in documented_topics(readme()).items()
    }
    rows = "\n".join(f"| `{t}` | {p} | {c} |" for t, (p, c) in expected.items())
    assert documented == expected, f"deploy/README.md's topic table should read:\n{rows}"
    assert list(documented) == list(TOPIC_NAMES)


def test_readme_metric_tables_are_what_the_code_declares() -> None:
    documented = documented_metrics(readme())
    # Every metric the dashboards and rules use is documented.
    assert metrics_used_by_deploy() - set(documented) == set()
    # dccgate's own: each documented family is declared in the code, and each declared
    # name is documented (f-string names: at least one family of each).
    patterns = declared_metrics()
    ours = {name for name in documented if name.startswith("dccgate_")}
    undeclared = {n for n in ours if not any(re.fullmatch(p, n) for p in patterns)}
    assert undeclared == set(), f"documented, but the code declares no such metric: {undeclared}"
    undocumented = {p for p in patterns if not any(re.fullmatch(p, n) for n in ours)}
    assert undocumented == set(), f"declared in the code, missing in deploy/README: {undocumented}"
    # The others are the process and GC collectors every process registers.
    page = generate_latest(_common_registry()).decode()
    standard = {n: t for n, t in family_types(page).items() if not n.startswith("dccgate_")}
    assert {n: t for n, t in documented.items() if not n.startswith("dccgate_")} == standard


def _common_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    CommonMetrics(registry, version="t")
    return registry


def test_readme_rule_table_is_the_rule_files() -> None:
    rules = {}
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules[rule["alert"]] = (rule.get("for", "0s"), rule["labels"]["severity"])
    assert documented_rules(readme()) == rules
    tree_count = re.search(r"alert rules \((\d+)\)", readme())
    assert tree_count is not None
    assert int(tree_count.group(1)) == len(rules)


def test_readme_dashboard_rows_are_the_dashboard() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "dccgate.json").read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert documented_dashboard_rows(readme()) == rows


def _tree_paths() -> set[str]:
    """The paths deploy/README.md's tree names, relative to deploy/ (folders end in /)."""
    tree = readme().split("```", 2)[1].strip().splitlines()
    assert tree[0] == "deploy/"
    stack: list[str] = []
    paths = set()
    for line in tree[1:]:
        m = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        assert m is not None, line
        depth = len(m.group(1)) // 4
        stack[depth:] = [m.group(2)]
        paths.add("".join(stack))
    return paths


def test_readme_tree_names_every_file_of_deploy() -> None:
    listed = _tree_paths()
    for name in listed:
        assert (DEPLOY / name).exists(), f"deploy/README.md names {name}, which does not exist"
    # A folder listed without its files (k8s/, kafka/, secrets/) covers what is in it.
    leaves = {
        p for p in listed if p.endswith("/") and not any(q != p and q.startswith(p) for q in listed)
    }
    for path in sorted(DEPLOY.rglob("*")):
        rel = path.relative_to(DEPLOY).as_posix()
        if path.is_dir() or rel == "README.md" or "__pycache__" in rel:
            continue
        assert rel in listed or any(rel.startswith(leaf) for leaf in leaves), rel


def test_readme_has_no_stale_statements() -> None:
    text = readme()
    for stale in ("DESIGN.md", "only service the CLI has", "nine topics", "no consumer-lag"):
        assert stale not in text, stale
    for path in [*DEPLOY.rglob("*.y*ml"), DEPLOY / "Dockerfile"]:
        body = path.read_text()
        assert "nine topics" not in body, path
        assert "only service the CLI has" not in body, path
