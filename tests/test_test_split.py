"""NAS-Bench-201's x-valid / x-test halves of the CIFAR-100 test set and the ImageNet16-120 validation set:
the `full` method's ``data.test_split``, read from the benchmark's split file in the datasets folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from app.catalog.datasets import DatasetUnavailable, read_split_file
from app.catalog.methods import config_hash, hashed_form, resolve
from app.catalog.training import FullConfig
from app.errors import InputError
from tests.test_data_files import normalised, write_cifar100, write_imagenet16
from worker.data import DeviceDataset, clear_cache, load_dataset, request_from_config
from worker.methods import full
from worker.methods.base import EvalRequest

CPU = torch.device("cpu")
NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# write_cifar100 writes 5 test images; this split keeps 0, 2, 4 as x-test.
CIFAR100_X_VALID, CIFAR100_X_TEST = [3, 1], [0, 4, 2]


@pytest.fixture(autouse=True)
def _fresh_process_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def write_split(data_dir: Path, name: str, x_valid: list[Any], x_test: list[Any], typed: bool = True) -> Path:
    """A split file as the benchmark ships it: each list as a typed pair ["int", [...]] (or bare)."""
    path = data_dir / name
    content = (
        {"xvalid": ["int", x_valid], "xtest": ["int", x_test]}
        if typed
        else {"xvalid": x_valid, "xtest": x_test}
    )
    path.write_text(json.dumps(content))
    return path


def full_data_config(dataset: str, **data: Any) -> dict[str, Any]:
    """The effective `full` data config a batch would send, with the whole (tiny) splits."""
    overrides = {"data": {"train_size": None, "test_size": None, **data}}
    return resolve("full", "tiny", overrides, "nb201", dataset, ["methods", 0]).config["data"]


def evaluated_images(dataset: DeviceDataset) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(dataset.test_batches(2))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_cifar100_x_test_evaluates_exactly_the_listed_images(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    write_split(tmp_path, "cifar100-test-split.txt", CIFAR100_X_VALID, CIFAR100_X_TEST)
    rows, labels = written["test"]
    for split, indices in (("x-test", CIFAR100_X_TEST), ("x-valid", CIFAR100_X_VALID)):
        data = load_dataset(
            request_from_config("cifar100", full_data_config("cifar100", test_split=split)), CPU, tmp_path
        )
        images, got_labels = evaluated_images(data)
        chosen = sorted(indices)
        assert data.info["test_size"] == len(chosen) and data.info["test_split"] == split
        assert data.info["test_split_of"] == 5
        assert data.info["test_split_file"] == str(tmp_path / "cifar100-test-split.txt")
        assert got_labels.tolist() == [labels[i] for i in chosen]
        expected = normalised(rows[chosen].reshape(-1, 3, 32, 32), "cifar100")
        assert torch.allclose(images.double(), expected, atol=1e-5)
    whole = load_dataset(request_from_config("cifar100", full_data_config("cifar100")), CPU, tmp_path)
    assert whole.info["test_size"] == 5 and "test_split" not in whole.info


def test_imagenet16_halves_index_the_validation_set_after_keeping_120_classes(tmp_path: Path) -> None:
    written = write_imagenet16(tmp_path)
    kept = int(written["test_labels"].size)
    x_test = list(range(0, kept, 2))
    # Numeric strings, as the benchmark's loader would also accept.
    write_split(tmp_path, "imagenet-16-120-test-split.txt", [str(i) for i in range(1, kept, 2)], x_test)
    config = full_data_config("imagenet16_120", test_split="x-test")
    data = load_dataset(request_from_config("imagenet16_120", config), CPU, tmp_path)
    images, labels = evaluated_images(data)
    assert data.info["test_size"] == len(x_test)
    assert labels.tolist() == written["test_labels"][x_test].tolist()
    expected = normalised(written["test_rows"][x_test].reshape(-1, 3, 16, 16), "imagenet16_120")
    assert torch.allclose(images.double(), expected, atol=1e-5)


def test_test_subset_is_drawn_inside_the_half(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    write_split(tmp_path, "cifar100-test-split.txt", CIFAR100_X_VALID, CIFAR100_X_TEST)
    config = full_data_config("cifar100", test_split="x-test", test_size=2)
    data = load_dataset(request_from_config("cifar100", config), CPU, tmp_path)
    _, labels = evaluated_images(data)
    assert data.info["test_size"] == 2
    x_test_labels = [written["test"][1][i] for i in CIFAR100_X_TEST]
    assert all(label in x_test_labels for label in labels.tolist())


class LocalContext:
    """The worker's RunContext reduced to what `full` uses: datasets from a folder, no progress store."""

    def __init__(self, data_dir: Path) -> None:
        self.device = CPU
        self.data_dir = data_dir

    def dataset(self, dataset: str, data_config: dict[str, Any]) -> DeviceDataset:
        return load_dataset(request_from_config(dataset, data_config), CPU, self.data_dir)

    def progress(self, **fields: Any) -> None:
        pass

    def stage1_budget_s(self) -> float | None:
        return None

    def report_stage1_time(self, seconds: float) -> None:
        pass


def test_full_scores_on_the_x_test_half_and_records_it(tmp_path: Path, one_torch_thread: None) -> None:
    write_cifar100(tmp_path)
    write_split(tmp_path, "cifar100-test-split.txt", CIFAR100_X_VALID, CIFAR100_X_TEST)
    overrides = {"epochs": 1, "data": {"train_size": None, "test_size": None, "test_split": "x-test"}}
    resolved = resolve("full", "tiny", overrides, "nb201", "cifar100", ["methods", 0])
    assert resolved.config["data"]["test_split"] == "x-test"  # the effective config records it
    request = EvalRequest(1, "full", "nb201", NB201_A, "cifar100", 0, resolved.config)
    result = full.run(request, LocalContext(tmp_path))  # type: ignore[arg-type]
    assert result.info["test_samples"] == len(CIFAR100_X_TEST)
    assert result.info["test_split"] == "x-test"
    assert result.score is not None and result.score * 3 == pytest.approx(round(result.score * 3))


@pytest.mark.parametrize(
    ("x_valid", "x_test", "problem"),
    [
        ([0, 1, 2], [2, 3, 4], "share 1 indices"),
        ([1, 3], [0, 2, 5], "index 5 outside 0..4"),
        ([1, 3], [0, 2], "cover 4 of the 5"),
        ([1, 1, 3], [0, 2, 4], "more than once"),
        ([1, "x"], [0, 2, 4], "not a list of integer indices"),
    ],
)
def test_malformed_split_files_are_named(
    tmp_path: Path, x_valid: list[Any], x_test: list[Any], problem: str
) -> None:
    write_cifar100(tmp_path)
    path = write_split(tmp_path, "cifar100-test-split.txt", x_valid, x_test, typed=False)
    config = full_data_config("cifar100", test_split="x-test")
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(request_from_config("cifar100", config), CPU, tmp_path)
    assert problem in str(caught.value) and str(path) in str(caught.value)


def test_missing_split_file_at_load_names_the_path(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(
            request_from_config("cifar100", full_data_config("cifar100", test_split="x-valid")), CPU, tmp_path
        )
    assert str(tmp_path / "cifar100-test-split.txt") in str(caught.value)
    assert "'xvalid' and 'xtest'" in str(caught.value)


def test_split_file_without_its_keys_is_named(tmp_path: Path) -> None:
    (tmp_path / "cifar100-test-split.txt").write_text(json.dumps({"valid": [0], "test": [1]}))
    with pytest.raises(DatasetUnavailable, match="lacks key 'xvalid'"):
        read_split_file("cifar100", tmp_path)


@pytest.mark.parametrize("dataset", ["cifar10", "synthetic_cifar10", "cifar10_folder"])
@pytest.mark.parametrize("split", ["x-valid", "x-test"])
def test_datasets_without_an_official_split_reject_a_half(dataset: str, split: str) -> None:
    with pytest.raises(InputError) as caught:
        resolve("full", "tiny", {"data": {"test_split": split}}, "nb201", dataset, ["methods", 0])
    assert "test_split" in str(caught.value) and "cifar100" in str(caught.value)
    resolve("full", "tiny", {"data": {"test_split": "all"}}, "nb201", dataset, ["methods", 0])


def test_default_leaves_the_config_hash_unchanged() -> None:
    default = resolve("full", "paper", None, "nb201", "cifar100", ["m"])
    explicit = resolve("full", "paper", {"data": {"test_split": "all"}}, "nb201", "cifar100", ["m"])
    assert default.config_hash == explicit.config_hash
    # The hash is the one of the config without the field: what was stored before it existed.
    assert "test_split" not in hashed_form(default.config, FullConfig)["data"]
    before = {
        **default.config,
        "data": {k: v for k, v in default.config["data"].items() if k != "test_split"},
    }
    assert config_hash("full", before, FullConfig) == default.config_hash
    x_test = resolve("full", "paper", {"data": {"test_split": "x-test"}}, "nb201", "cifar100", ["m"])
    assert x_test.config_hash != default.config_hash


# ---------------------------------------------------------------------------------------------
# At submission (the API's own datasets folder decides before any worker has advertised itself)


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from sqlalchemy import delete

    from app.db import session_scope
    from app.models import WorkerSeen
    from app.settings import get_settings

    monkeypatch.setenv("FASTARCHRANK_DATASETS_DIR", str(tmp_path))
    get_settings.cache_clear()
    # These tests are about the API's own files: forget workers that earlier tests left advertising
    # (with live workers in the fleet the dataset check asks them instead).
    with session_scope() as s:
        s.execute(delete(WorkerSeen))
    yield tmp_path
    monkeypatch.delenv("FASTARCHRANK_DATASETS_DIR")
    get_settings.cache_clear()


def full_batch(dataset: str, split: str) -> dict[str, Any]:
    return {
        "space": "nb201",
        "dataset": dataset,
        "methods": [{"name": "full", "preset": "tiny", "config": {"data": {"test_split": split}}}],
        "seed": 7301,
        "items": [{"genotype": NB201_A}],
    }


def problem_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    return body


def test_missing_split_file_is_422_naming_path_and_file(client: Any, datasets_dir: Path) -> None:
    from tests.conftest import table_counts

    write_cifar100(datasets_dir)
    before = table_counts()
    problem = problem_of(client.post("/v1/batches", json=full_batch("cifar100", "x-test")), 422)
    message = json.dumps(problem)
    assert problem["errors"][0]["loc"][-1] == "dataset"
    assert str(datasets_dir / "cifar100-test-split.txt") in message and "'xvalid'" in message
    assert table_counts() == before  # nothing changed
    # With the file in place the same batch is accepted.
    write_split(datasets_dir, "cifar100-test-split.txt", CIFAR100_X_VALID, CIFAR100_X_TEST)
    assert client.post("/v1/batches", json=full_batch("cifar100", "x-test")).status_code == 201


def test_overlapping_split_file_is_422_at_submission(client: Any, datasets_dir: Path) -> None:
    write_cifar100(datasets_dir)
    write_split(datasets_dir, "cifar100-test-split.txt", [0, 1], [1, 2])
    problem = problem_of(client.post("/v1/batches", json=full_batch("cifar100", "x-valid")), 422)
    assert "cifar100-test-split.txt" in problem["errors"][0]["msg"] and "share" in problem["errors"][0]["msg"]


def test_cifar10_half_is_422_naming_the_field(client: Any) -> None:
    problem = problem_of(client.post("/v1/batches", json=full_batch("synthetic_cifar10", "x-test")), 422)
    assert problem["errors"][0]["loc"][-2:] == ["data", "test_split"]
    assert "test_split='all'" in problem["errors"][0]["msg"]
