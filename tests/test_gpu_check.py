"""The prepared device check must not rot: its CPU smoke mode runs every section end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_cifar_tarball(tmp_path: Path) -> Path:
    """The jpg tarball's layout (cifar10-jpg/{train,test}/<class>/*.jpg), a few images per class."""
    root = tmp_path / "src" / "cifar10-jpg"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 1)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    tar_path = tmp_path / "cifar10-jpg.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(root, arcname="cifar10-jpg")
    return tar_path


def test_smoke_mode_runs_every_section_and_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "bench.gpu_check",
        "--smoke",
        "--out",
        str(out),
        "--cifar-tar",
        str(tiny_cifar_tarball(tmp_path)),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads((out / "gpu_check.json").read_text())["sections"]
    errors = {name: s.get("error") for name, s in report.items() if "error" in s}
    assert done.returncode == 0 and not errors, (errors, done.stderr[-3000:])
    assert list(report) == [
        "environment",
        "training_parity",
        "same_seed_twice",
        "zero_cost_parity",
        "throughput",
        "loop_cuda_graph",
        "fear_paper_cifar10",
        "processes",
        "stacked",
        "service_stack",
        "compile",
    ]
    # CPU against itself: the comparisons are exact, so they cannot hide a broken comparison.
    assert report["training_parity"]["ok"] and report["training_parity"]["abs_diff_per_step"][0] == 0
    assert report["same_seed_twice"]["identical"]
    assert report["zero_cost_parity"]["max_relative_diff"] == 0
    assert report["fear_paper_cifar10"]["train_images"] == 40
    assert {"smallest", "median", "largest", "warmup_s"} <= set(report["fear_paper_cifar10"])
    assert report["processes"]["K2"]["evaluations_per_hour"] > 0
    assert report["stacked"]["K2_grouped"]["evaluations_per_hour"] > 0
    assert report["loop_cuda_graph"]["max_abs_weight_diff"] == 0.0  # CPU: the static step is bitwise
    # On the CPU the grouped stack's first losses are the standalone networks' (3x3 forward is bitwise).
    assert report["stacked"]["grouped_fp32_first_loss_max_abs_diff"] < 1e-5
    # The worker's stacked FEAR path: on CPU (exact mode) every outcome is the standalone one.
    stack = report["service_stack"]
    assert stack["mode"] == "exact" and stack["k"] == 4
    assert all(row["stacked"] == row["alone"] for row in stack["rows"]), stack["rows"]
    assert "## throughput" in (out / "gpu_check.md").read_text()
