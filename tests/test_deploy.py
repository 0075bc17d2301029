"""The shipped Docker/compose files and the worker's start-up device check.

The file is validated by Compose itself (`docker-compose config`, Debian's docker-compose 1.29, which CI
installs; the compose plugin is not installable offline here) for every profile combination, and
checked as YAML against what a deployment relies on (targets, device reservations, healthchecks,
profiles)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from worker.device_check import DeviceUnavailable, main, require_device

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_targets() -> dict[str, str]:
    """Stage name -> the stage's text."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_service_builds_a_target_the_dockerfile_has(compose: dict[str, Any]) -> None:
    targets = dockerfile_targets()
    assert {"api", "worker-cpu", "worker-cuda"} <= set(targets)
    built = {name: svc["build"]["target"] for name, svc in compose["services"].items() if "build" in svc}
    assert built == {
        "api": "api",
        "worker-gpu": "worker-cuda",
        "worker-gpu1": "worker-cuda",
        "worker-cpu": "worker-cpu",
    }


def test_the_cuda_image_pins_the_projects_torch_from_a_cuda_index() -> None:
    stage = dockerfile_targets()["worker-cuda"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    upper = re.search(r'"torch>=[\d.]+,<=([\d.]+)"', pyproject)
    assert upper is not None
    assert f'"torch=={upper.group(1)}"' in stage  # exactly the project's torch, never an older one
    assert re.search(r"TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+", stage)
    assert "torch.version.cuda" in stage  # the build fails if a CPU wheel slipped in


def test_the_api_image_has_no_torch_and_the_api_never_imports_it() -> None:
    stage = dockerfile_targets()["api"]
    assert "--index-url" not in stage and "--no-deps" in stage
    code = "import sys, app.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def _gpu_workers(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if "deploy" in s}


def _check_gpu_worker(name: str, svc: dict[str, Any]) -> str:
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    (host_index,) = device["device_ids"]
    command = svc["command"]
    # The container sees its one reserved card as index 0, whatever its host index.
    assert command[command.index("--gpu") + 1] == "0", name
    assert svc["build"]["target"] == "worker-cuda", name
    node = command[command.index("--name") + 1].split("@")[0]
    assert f"-d {node}@$$HOSTNAME" in svc["healthcheck"]["test"][1], name
    return str(host_index)


def test_gpu_workers_map_one_card_each_run_cuda_and_are_health_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gpu = _gpu_workers(services)
    assert sorted(gpu) == ["worker-gpu", "worker-gpu1"]
    # GPU 0 comes with --profile gpu; the second card has its own profile, so one-GPU boxes are fine.
    assert gpu["worker-gpu"]["profiles"] == ["gpu"] and gpu["worker-gpu1"]["profiles"] == ["gpu1"]
    hosts = [_check_gpu_worker(name, svc) for name, svc in sorted(gpu.items())]
    assert hosts == ["0", "1"]
    nodes = {svc["command"][svc["command"].index("--name") + 1] for svc in gpu.values()}
    assert len(nodes) == 2  # two Celery nodes with one name would shadow each other
    cpu = services["worker-cpu"]
    assert "profiles" not in cpu and "--device" in cpu["command"] and "cpu" in cpu["command"]
    assert "inspect ping" in cpu["healthcheck"]["test"][1]
    for name in ("api", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    # Requests reach the API container from outside its loopback: keys, and the docs say how.
    assert services["api"]["environment"]["FASTARCHRANK_AUTH"] == "required"
    for name in ("api", "worker-cpu", *gpu):
        env = services[name]["environment"]
        assert env["FASTARCHRANK_BROKER_URL"].startswith("redis://"), name
        assert env["FASTARCHRANK_DATABASE_URL"].startswith("postgresql"), name


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("FASTARCHRANK_TEST_REQUIRE_COMPOSE") == "1":
            pytest.fail("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return found


def _compose_config(file: Path, profiles: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    argv = [_docker_compose(), "-f", str(file), "--project-directory", str(ROOT)]
    for profile in profiles:
        argv += ["--profile", profile]
    # `config` parses, validates against Compose's schema and merges; it needs no Docker daemon.
    return subprocess.run([*argv, "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("gpu", "gpu1")], ids=["cpu", "gpu", "two-gpus"])
def test_compose_itself_accepts_the_file(profiles: tuple[str, ...]) -> None:
    out = _compose_config(ROOT / "docker-compose.yml", profiles)
    assert out.returncode == 0, out.stderr


def test_compose_validation_rejects_a_misspelt_key(tmp_path: Path) -> None:
    # Shows the check above can fail: a typo in the GPU reservation is what a deployment would hit.
    text = (ROOT / "docker-compose.yml").read_text()
    assert "device_ids:" in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("device_ids:", "device_id:", 1))
    out = _compose_config(broken, ("gpu",))
    assert out.returncode != 0 and "device_id" in out.stderr


def test_cpu_and_auto_always_pass() -> None:
    assert require_device("cpu").resolved == "cpu"
    assert require_device("auto").resolved == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU messages")
def test_a_worker_asked_for_cuda_without_one_fails_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(DeviceUnavailable, match=r"sees no CUDA device.*--device cpu"):
        require_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceUnavailable, match=r"CPU-only build.*worker-cuda"):
        require_device("cuda:0")
    assert main(["cuda"]) == 1 and "CPU-only" in capsys.readouterr().err


def test_an_index_beyond_the_visible_cards_names_the_container_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert require_device("cuda:0").resolved == "cuda:0"
    with pytest.raises(DeviceUnavailable, match="host GPU 1 sees it as cuda:0"):
        require_device("cuda:1")
    with pytest.raises(DeviceUnavailable, match="not supported"):
        require_device("mps")
