"""deploy/: the Compose file, the Kubernetes manifests and the Grafana dashboard parse, wire the
probes to the service's /healthz and /readyz, share one PostgreSQL state, and chart only
metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICE = DEPLOY.parent / "python" / "adrank" / "service"


def _k8s() -> dict[tuple[str, str], dict]:
    documents = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "metadata" in doc:
                documents[(doc["kind"], doc["metadata"]["name"])] = doc
    return documents


def _exported_metrics() -> set[str]:
    """The metric names the service's code registers, with Prometheus's suffixes."""
    names = set()
    for source in (SERVICE / "metrics.py", SERVICE / "state_metrics.py"):
        text = source.read_text()
        for name in re.findall(r'"(adrank_[a-z_]+)"', text):
            kind = "Counter" if re.search(rf'Counter\(\s*"{name}"', text) else ""
            names |= {f"{name}_total"} if kind else {name}
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        names |= {f"adrank_campaign_{n}" for n in re.findall(r'\("(\w+)", "', text)}
    return names


def test_the_service_deployment_probes_healthz_and_readyz() -> None:
    docs = _k8s()
    deployment = docs[("Deployment", "adrank")]
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert f"--port={port}" in container["args"]
    assert "--state=$(ADRANK_STATE)" in container["args"]
    assert "--triton-url=adrank-triton:8001" in container["args"]
    (env,) = container["env"]
    secret = docs[("Secret", env["valueFrom"]["secretKeyRef"]["name"])]
    state = secret["stringData"][env["valueFrom"]["secretKeyRef"]["key"]]
    assert state.startswith("postgresql://")
    assert "@adrank-postgres:5432/" in state  # the PostgreSQL Service
    assert docs[("Service", "adrank")]["spec"]["selector"] == {"app": "adrank"}


def test_triton_and_postgres_are_deployed_with_their_probes() -> None:
    docs = _k8s()
    triton = docs[("Deployment", "adrank-triton")]
    assert triton["spec"]["replicas"] >= 1
    (container,) = triton["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["port"] for p in docs[("Service", "adrank-triton")]["spec"]["ports"]}
    assert 8001 in ports
    postgres = docs[("StatefulSet", "adrank-postgres")]
    (db,) = postgres["spec"]["template"]["spec"]["containers"]
    assert db["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert docs[("Service", "adrank-postgres")]["spec"]["ports"][0]["port"] == 5432
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["adrank.yaml", "postgres.yaml", "triton.yaml"]


def test_the_compose_file_runs_replicas_on_one_postgres_state() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"adrank", "triton", "postgres"}
    adrank = services["adrank"]
    assert "replicas" in adrank["deploy"]
    assert "replicas" in services["triton"]["deploy"]
    assert "--state=postgresql://adrank:adrank@postgres:5432/adrank" in adrank["command"]
    assert "--triton-url=triton:8001" in adrank["command"]
    assert "/readyz" in " ".join(adrank["healthcheck"]["test"])
    assert adrank["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (DEPLOY / compose["services"]["adrank"]["build"]["dockerfile"].split("/")[-1]).exists()


def test_the_dashboard_charts_only_metrics_the_service_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "adrank-dashboard.json").read_text())
    exported = _exported_metrics()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\badrank_[a-z_]+", target["expr"]))
    assert used, "the dashboard charts nothing"
    assert used <= exported, f"not exported by the service: {sorted(used - exported)}"
    for needed in (
        "adrank_requests_total",
        "adrank_errors_total",
        "adrank_stage_seconds_bucket",
        "adrank_degraded_responses_total",
        "adrank_model_version_info",
        "adrank_campaign_spend",
        "adrank_campaign_participation",
        "adrank_kill_switches",
    ):
        assert needed in used, needed


@pytest.mark.parametrize("name", ["adrank_requests_total", "adrank_stage_seconds_bucket"])
def test_the_metric_list_is_read_from_the_code(name) -> None:
    assert name in _exported_metrics()
