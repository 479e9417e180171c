"""The deployment files parse and agree with each other (deploy/, docs/deploy.md)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SHARED = ("EMOFLOW_DATABASE_URL", "EMOFLOW_BLOB_ROOT", "PREFECT_API_URL")


def test_the_compose_file_wires_every_emoflow_service_to_one_store() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "prefect-server", "deploy", "worker", "inspector"} <= set(services)
    for name in ("deploy", "worker", "inspector"):
        environment = services[name]["environment"]
        assert all(key in environment for key in SHARED), name
        assert environment["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert environment["EMOFLOW_BLOB_ROOT"].startswith("s3://")
    assert services["worker"]["command"][:3] == ["prefect", "worker", "start"]
    assert "emoflow-process" in services["worker"]["command"]
    # the pools prefect.yaml's deployments name are the ones the deploy service creates
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in prefect["deployments"]}
    assert pools == {"emoflow-process", "emoflow-gpu"}
    assert all(f"work-pool create {pool} " in services["deploy"]["command"][-1] for pool in pools)
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_systemd_units_parse_and_verify(unit: str) -> None:
    path = DEPLOY / "systemd" / unit
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(path.read_text())
    assert {"Unit", "Service", "Install"} <= set(parsed.sections())
    assert parsed["Service"]["ExecStart"].startswith("/opt/emoflow/.venv/bin/")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    # on a machine without the install, the only complaint may be the missing executable
    lines = [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip()]
    assert all("/opt/emoflow/.venv/bin/" in line and "not executable" in line for line in lines), lines
