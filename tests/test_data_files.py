"""Real dataset formats, written tiny here, loaded through the service's own code path."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.catalog.datasets import DATASETS, DatasetUnavailable, availability, describe, get_dataset
from worker.data import DataRequest, clear_cache, load_dataset
from worker.data.safe_pickle import _reconstruct

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


class Python2StylePickler(pickle._Pickler):
    """Writes what the original (Python 2) CIFAR files hold: byte strings as BINSTRING opcodes and numpy's
    reconstruction helper under its numpy 1.x module name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_python2_pickle(path: Path, entry: dict[bytes, Any]) -> None:
    with open(path, "wb") as handle:
        Python2StylePickler(handle, protocol=2).dump(entry)


def random_rows(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, size=(count, 3 * side * side), dtype=np.uint8)


def write_cifar10(data_dir: Path, per_batch: int = 4, test_count: int = 6, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    root = data_dir / "cifar-10-batches-py"
    root.mkdir(parents=True)
    train_rows, train_labels = [], []
    for i in range(1, 6):
        rows, labels = random_rows(rng, per_batch, 32), rng.integers(0, 10, per_batch).tolist()
        write_python2_pickle(
            root / f"data_batch_{i}",
            {
                b"batch_label": b"training batch",
                b"labels": labels,
                b"data": rows,
                b"filenames": [b"x.png"] * per_batch,
            },
        )
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = random_rows(rng, test_count, 32), rng.integers(0, 10, test_count).tolist()
    write_python2_pickle(
        root / "test_batch", {b"batch_label": b"testing", b"labels": test_labels, b"data": test_rows}
    )
    write_python2_pickle(root / "batches.meta", {b"label_names": [b"airplane"] * 10, b"num_vis": 3072})
    return {
        "train_rows": np.concatenate(train_rows),
        "train_labels": train_labels,
        "test_rows": test_rows,
        "test_labels": test_labels,
    }


def write_cifar100(data_dir: Path, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    root = data_dir / "cifar-100-python"
    root.mkdir(parents=True)
    written = {}
    for split, count in (("train", 12), ("test", 5)):
        rows = random_rows(rng, count, 32)
        fine = [99, 0, *rng.integers(0, 100, count - 2).tolist()]
        coarse = rng.integers(0, 20, count).tolist()
        write_python2_pickle(root / split, {b"data": rows, b"fine_labels": fine, b"coarse_labels": coarse})
        written[split] = (rows, fine)
    write_python2_pickle(root / "meta", {b"fine_label_names": [b"apple"] * 100})
    return written


def write_imagenet16(data_dir: Path, seed: int = 2) -> dict[str, Any]:
    """Python 3 pickles (protocol 3, numpy's current module names) with 1-based labels over 1000 classes."""
    rng = np.random.default_rng(seed)
    root = data_dir / "ImageNet16"
    root.mkdir(parents=True)
    kept_rows, kept_labels = [], []
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = np.array([1, 120, 121, 1000, *rng.integers(1, 1001, 4)])
        rows = random_rows(rng, labels.size, 16)
        entry = {"data": rows, "labels": labels.tolist()}
        if name != "val_data":
            entry["mean"] = rows.mean(axis=0)
        with open(root / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=3)
        keep = labels <= 120
        kept_rows.append(rows[keep])
        kept_labels.append(labels[keep] - 1)
    return {
        "train_rows": np.concatenate(kept_rows[:10]),
        "train_labels": np.concatenate(kept_labels[:10]),
        "test_rows": kept_rows[10],
        "test_labels": kept_labels[10],
    }


# Class folder names whose sorted order differs from the order they are written in.
FOLDER_CLASSES = ["truck", "airplane", "ship", "bird", "cat", "horse", "deer", "frog", "dog", "automobile"]


def write_image_folder(data_dir: Path, per_class: int = 2, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    root = data_dir / "cifar10-jpg"
    expected: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    label_of = {name: index for index, name in enumerate(sorted(FOLDER_CLASSES))}
    for split, count in (("train", per_class), ("test", 1)):
        for name in FOLDER_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
                expected[split].append((pixels, label_of[name]))
    return expected


def normalised(rows_chw: np.ndarray, name: str) -> torch.Tensor:
    info = get_dataset(name)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    return (torch.from_numpy(rows_chw).double() / 255 - mean.double()) / std.double()


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    clear_cache()
    yield
    clear_cache()


def all_test_images(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(dataset.test_batches(4))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_cifar10_pickles_load_with_layout_labels_and_normalisation(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    dataset = load_dataset(DataRequest("cifar10"), CPU, tmp_path)
    assert (dataset.num_classes, dataset.input_size) == (10, 32)
    assert dataset.train_x.shape == (20, 3, 32, 32) and dataset.train_x.dtype == torch.uint8
    # Row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major.
    row = written["train_rows"][7]
    assert dataset.train_x[7, 1, 2, 5].item() == row[1024 + 2 * 32 + 5]
    assert np.array_equal(dataset.train_x.numpy().reshape(20, -1), written["train_rows"])
    assert dataset.train_y.tolist() == written["train_labels"]
    x, y = all_test_images(dataset)
    assert x.dtype == torch.float32 and y.tolist() == written["test_labels"]
    expected = normalised(written["test_rows"].reshape(-1, 3, 32, 32), "cifar10")
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)
    assert dataset.info["source"] == str((tmp_path / "cifar-10-batches-py").resolve())


def test_cifar100_uses_fine_labels_and_its_own_statistics(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    dataset = load_dataset(DataRequest("cifar100"), CPU, tmp_path)
    assert dataset.num_classes == 100
    assert dataset.train_y.tolist() == written["train"][1]
    x, y = all_test_images(dataset)
    assert y.tolist() == written["test"][1]
    expected = normalised(written["test"][0].reshape(-1, 3, 32, 32), "cifar100")
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)


def test_imagenet16_keeps_classes_1_to_120_and_shifts_labels(tmp_path: Path) -> None:
    written = write_imagenet16(tmp_path)
    dataset = load_dataset(DataRequest("imagenet16_120"), CPU, tmp_path)
    assert (dataset.num_classes, dataset.input_size) == (120, 16)
    assert dataset.train_x.shape == (written["train_rows"].shape[0], 3, 16, 16)
    assert np.array_equal(dataset.train_x.numpy().reshape(-1, 768), written["train_rows"])
    assert dataset.train_y.tolist() == written["train_labels"].tolist()
    assert dataset.train_y.min() == 0 and dataset.train_y.max() == 119
    x, y = all_test_images(dataset)
    assert y.tolist() == written["test_labels"].tolist()
    expected = normalised(written["test_rows"].reshape(-1, 3, 16, 16), "imagenet16_120")
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)


def test_image_folder_sorts_classes_decodes_exactly_and_caches(tmp_path: Path) -> None:
    expected = write_image_folder(tmp_path)
    dataset = load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    assert dataset.info["classes"] == sorted(FOLDER_CLASSES)
    assert dataset.info["decoded_now"] is True
    train = sorted(expected["train"], key=lambda item: item[1])  # files are read class by class
    assert dataset.train_y.tolist() == [label for _, label in train]
    assert torch.equal(dataset.train_x, torch.from_numpy(np.stack([p for p, _ in train])).permute(0, 3, 1, 2))
    x, _ = all_test_images(dataset)
    test = sorted(expected["test"], key=lambda item: item[1])
    rows = np.stack([p for p, _ in test]).transpose(0, 3, 1, 2)
    torch.testing.assert_close(
        x.double(), normalised(np.ascontiguousarray(rows), "cifar10"), rtol=0, atol=1e-5
    )
    cache_files = list((tmp_path / "cache" / "image_folder").glob("*.pt"))
    assert len(cache_files) == 1

    clear_cache()
    again = load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    assert again.info["decoded_now"] is False and torch.equal(again.train_x, dataset.train_x)

    # Replacing an image changes the listing's signature: the cache is rebuilt, not reused stale.
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(
        tmp_path / "cifar10-jpg/train/airplane/0000.png"
    )
    os.utime(tmp_path / "cifar10-jpg/train/airplane/0000.png", ns=(1, 1))
    clear_cache()
    rebuilt = load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    assert rebuilt.info["decoded_now"] is True and rebuilt.train_x[0].sum() == 0


def test_image_folder_reads_jpeg_too(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=1)
    pixels = np.full((32, 32, 3), 200, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "cifar10-jpg/train/cat/extra.JPG", quality=95)
    dataset = load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    assert dataset.train_size == 11
    cat = sorted(FOLDER_CLASSES).index("cat")
    cat_images = dataset.train_x[dataset.train_y == cat]
    assert cat_images.shape[0] == 2 and (cat_images[1].int() - 200).abs().max() <= 3  # lossy


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet16_120", "cifar10_folder"])
def test_missing_files_name_the_path_and_the_layout(tmp_path: Path, name: str) -> None:
    state = availability(name, tmp_path)
    assert state["present"] is False and state["missing"]
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(DataRequest(name), CPU, tmp_path)
    message = str(caught.value)
    assert str(tmp_path / get_dataset(name).folder) in message
    assert get_dataset(name).layout in message
    assert state["missing"][0] in message
    copy = pickle.loads(pickle.dumps(caught.value))  # crosses process boundaries intact
    assert isinstance(copy, DatasetUnavailable) and str(copy) == message and copy.path == caught.value.path


def test_one_missing_batch_is_reported_by_name(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    assert availability("cifar10", tmp_path)["missing"] == ["data_batch_3"]
    with pytest.raises(DatasetUnavailable, match="missing data_batch_3"):
        load_dataset(DataRequest("cifar10"), CPU, tmp_path)


class _RunsAShellCommand:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncate", "not a readable dataset pickle"),
        ("global", "global posix.system is not allowed"),
        ("no_labels", "lacks key 'data' or 'labels'"),
        ("wrong_width", "expected uint8 N x 3072"),
        ("float_data", "expected uint8 N x 3072"),
        ("label_count", "3 labels for 4 images"),
        ("label_range", "labels outside 0..9"),
        ("not_a_dict", "holds a list, not a dict"),
    ],
)
def test_malformed_cifar_files_fail_with_the_promised_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, expected: str
) -> None:
    write_cifar10(tmp_path)
    target = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    rows = np.zeros((4, 3072), dtype=np.uint8)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "global":
        with open(target, "wb") as handle:
            pickle.dump({"data": _RunsAShellCommand(), "labels": []}, handle, protocol=2)
    elif damage == "no_labels":
        write_python2_pickle(target, {b"data": rows})
    elif damage == "wrong_width":
        write_python2_pickle(target, {b"data": rows[:, :3000], b"labels": [0] * 4})
    elif damage == "float_data":
        write_python2_pickle(target, {b"data": rows.astype(np.float32), b"labels": [0] * 4})
    elif damage == "label_count":
        write_python2_pickle(target, {b"data": rows, b"labels": [0] * 3})
    elif damage == "label_range":
        write_python2_pickle(target, {b"data": rows, b"labels": [0, 1, 2, 10]})
    elif damage == "not_a_dict":
        write_python2_pickle(target, [rows])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(DataRequest("cifar10"), CPU, tmp_path)
    assert expected in str(caught.value)
    assert str(target) in str(caught.value)
    assert not (tmp_path / "pwned").exists()


def test_malformed_images_in_a_folder_are_named(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=1)
    bad = tmp_path / "cifar10-jpg/train/dog/0000.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(bad)
    with pytest.raises(DatasetUnavailable, match="is 16x16, expected 32x32") as caught:
        load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    assert str(bad) in str(caught.value)
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetUnavailable, match="cannot decode"):
        load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)
    (tmp_path / "cifar10-jpg/test/zebra").mkdir()
    with pytest.raises(DatasetUnavailable, match="absent from train/: zebra"):
        load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)


def test_image_folder_needs_every_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=1)
    for image in (tmp_path / "cifar10-jpg/train/dog").iterdir():
        image.unlink()
    (tmp_path / "cifar10-jpg/train/dog").rmdir()
    with pytest.raises(DatasetUnavailable, match="9 class folders, expected 10"):
        load_dataset(DataRequest("cifar10_folder"), CPU, tmp_path)


def test_catalogue_describes_every_dataset_and_stays_torch_free(tmp_path: Path) -> None:
    assert set(DATASETS) == {"synthetic_cifar10", "cifar10", "cifar100", "imagenet16_120", "cifar10_folder"}
    synthetic = describe("synthetic_cifar10", tmp_path)
    assert synthetic["availability"]["present"] is True and synthetic["normalisation"] is None
    assert synthetic["augmentation"]["crop"] is None and synthetic["augmentation"]["flip"] is False
    cifar = describe("cifar10", tmp_path)
    assert cifar["augmentation"]["crop"] == {"size": 32, "padding": 4}
    assert cifar["normalisation"]["mean"][0] == pytest.approx(125.3 / 255)
    assert describe("imagenet16_120", tmp_path)["augmentation"]["crop"] == {"size": 16, "padding": 2}
    write_cifar10(tmp_path)
    assert describe("cifar10", tmp_path)["availability"] == {
        "present": True,
        "path": str(tmp_path / "cifar-10-batches-py"),
        "missing": [],
    }
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        get_dataset("mnist")
    probe = "import sys, app.catalog.datasets; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True)
