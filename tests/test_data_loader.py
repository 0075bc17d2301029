"""The device-resident loader: epochs, augmentation, reproducibility, fixed batches, subsets, caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF

from app.catalog.datasets import get_dataset
from tests.test_data_files import write_cifar10
from worker.data import DataRequest, clear_cache, load_dataset
from worker.data.augment import crop_and_flip, cutout_
from worker.data.device_dataset import DeviceTensorDataset
from worker.data.synthetic import cache_file_name

CPU = torch.device("cpu")
CIFAR = get_dataset("cifar10")


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    clear_cache()
    yield
    clear_cache()


def labelled_dataset(n: int = 64, *, crop_padding: int = 0, flip: bool = False) -> DeviceTensorDataset:
    """Random images whose label is their index, so every output can be traced to its source image."""
    images = torch.randint(
        0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(5), dtype=torch.uint8
    )
    labels = torch.arange(n)
    return DeviceTensorDataset(
        "probe", n, images, labels, images[:8], labels[:8], CPU,
        mean=CIFAR.mean, std=CIFAR.std, crop_padding=crop_padding, flip=flip,
    )  # fmt: skip


def reference_normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR.mean).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR.std).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def shifted(image: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """The image moved ``down`` rows and ``right`` columns (negative: up/left), uncovered pixels zero."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(down, 0) : h + min(down, 0), max(right, 0) : w + min(right, 0)] = image[
        ..., max(-down, 0) : h - max(down, 0), max(-right, 0) : w - max(right, 0)
    ]
    return out


def one_epoch(dataset: DeviceTensorDataset, seed: int, **options) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(dataset.train_batches(16, torch.Generator().manual_seed(seed), **options))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_an_epoch_visits_every_image_once_and_keeps_the_last_partial_batch() -> None:
    dataset = labelled_dataset(50)
    threads = torch.get_num_threads()
    batches = []
    for batch in dataset.train_batches(16, torch.Generator().manual_seed(0)):
        assert torch.get_num_threads() == threads  # the loader's single-thread section is closed
        batches.append(batch)
    assert [x.shape[0] for x, _ in batches] == [16, 16, 16, 2]
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(50)) and labels.tolist() != list(range(50))
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) for x, _ in batches)


def test_without_augmentation_batches_are_the_normalised_images() -> None:
    dataset = labelled_dataset(crop_padding=4, flip=True)
    x, y = one_epoch(dataset, 0, augment=False)
    torch.testing.assert_close(x, reference_normalise(dataset.train_x[y]), rtol=0, atol=1e-5)
    x[:] = 0  # batches are fresh tensors: writing into them leaves the dataset intact
    assert dataset.train_x.float().abs().sum() > 0


def test_flip_mirrors_exactly() -> None:
    dataset = labelled_dataset(flip=True)
    x, y = one_epoch(dataset, 1)
    plain = reference_normalise(dataset.train_x[y])
    same = (x - plain).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (x - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert bool((same ^ mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # about half of 64


def test_crop_is_a_shift_with_zero_padding_before_normalisation() -> None:
    dataset = labelled_dataset(crop_padding=4)
    x, y = one_epoch(dataset, 2)
    seen_shifts = set()
    for out, label in zip(x, y, strict=True):
        source = dataset.train_x[label]
        matches = [
            (down, right)
            for down in range(-4, 5)
            for right in range(-4, 5)
            if (out - reference_normalise(shifted(source, down, right)[None])[0]).abs().max() < 1e-5
        ]
        assert len(matches) == 1
        seen_shifts.add(matches[0])
    assert len(seen_shifts) > 20  # offsets are spread over the 81 possibilities


def test_crop_and_flip_match_torchvision_semantics() -> None:
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    offsets = torch.tensor([[0, 0], [4, 4], [0, 4], [4, 0], [1, 3], [2, 2]])
    flips = torch.tensor([False, True, False, True, True, False])
    out = crop_and_flip(images, offsets, flips, padding=2)
    for i in range(6):
        expected = TF.crop(TF.pad(images[i], [2], fill=0), int(offsets[i, 0]), int(offsets[i, 1]), 16, 16)
        if flips[i]:
            expected = TF.hflip(expected)
        assert torch.equal(out[i], expected)


def test_cutout_zeroes_a_clipped_square_like_darts() -> None:
    images = torch.randn(5, 3, 32, 32)
    centres = torch.tensor([[16, 16], [0, 0], [31, 5], [3, 30], [10, 20]])
    expected = images.clone()
    for i, (row, col) in enumerate(centres.tolist()):
        # DARTS' Cutout for an even side: rows clip(row - 8, 0, 32) .. clip(row + 8, 0, 32).
        top, bottom = max(row - 8, 0), min(row + 8, 32)
        left, right = max(col - 8, 0), min(col + 8, 32)
        expected[i, :, top:bottom, left:right] = 0
    assert torch.equal(cutout_(images.clone(), centres, 16), expected)


def test_cutout_in_an_epoch_blanks_one_square_of_at_most_the_requested_side() -> None:
    dataset = labelled_dataset()
    x, y = one_epoch(dataset, 3, augment=False, cutout=8)
    plain = reference_normalise(dataset.train_x[y])
    full_squares = 0
    for out, source in zip(x, plain, strict=True):
        changed = (out - source).abs() > 1e-5
        rows = changed.any(dim=(0, 2)).nonzero().flatten()
        cols = changed.any(dim=(0, 1)).nonzero().flatten()
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert height <= 8 and width <= 8
        box = (
            slice(None),
            slice(int(rows.min()), int(rows.max()) + 1),
            slice(int(cols.min()), int(cols.max()) + 1),
        )
        # Inside the square everything is 0 (a source pixel may already be 0: green 123 is the mean);
        # outside it nothing changed.
        outside = torch.ones_like(changed)
        outside[box] = False
        assert bool((out[box] == 0).all()) and not bool(changed[outside].any())
        full_squares += height == width == 8
    assert full_squares > 10


def test_augmented_epochs_are_reproducible_for_a_seed() -> None:
    dataset = labelled_dataset(crop_padding=4, flip=True)
    first = one_epoch(dataset, 11, cutout=6)
    again = one_epoch(dataset, 11, cutout=6)
    other = one_epoch(dataset, 12, cutout=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_fixed_batch_is_deterministic_normalised_and_unaugmented() -> None:
    dataset = labelled_dataset(crop_padding=4, flip=True)
    x, y = dataset.fixed_batch(12, seed=3)
    x_again, y_again = dataset.fixed_batch(12, seed=3)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)
    assert not torch.equal(y, dataset.fixed_batch(12, seed=4)[1])
    assert len(set(y.tolist())) == 12
    torch.testing.assert_close(x, reference_normalise(dataset.train_x[y]), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="fixed batch of 65 images requested from a train split of 64"):
        dataset.fixed_batch(65, seed=0)


def test_test_batches_are_in_order() -> None:
    dataset = labelled_dataset()
    labels = torch.cat([y for _, y in dataset.test_batches(3)])
    assert labels.tolist() == list(range(8))


def test_seeded_subsets(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # 20 train, 6 test images
    full = load_dataset(DataRequest("cifar10"), CPU, tmp_path)
    sub = load_dataset(DataRequest("cifar10", train_size=7, test_size=3, subset_seed=1), CPU, tmp_path)
    assert (sub.train_size, sub.test_size) == (7, 3)
    assert sub.info["full_train_size"] == 20 and sub.info["train_size"] == 7
    rows = {bytes(image.flatten().tolist()) for image in full.train_x}
    assert all(bytes(image.flatten().tolist()) in rows for image in sub.train_x)
    clear_cache()
    again = load_dataset(DataRequest("cifar10", train_size=7, test_size=3, subset_seed=1), CPU, tmp_path)
    assert torch.equal(again.train_x, sub.train_x) and torch.equal(again.test_y, sub.test_y)
    smaller = load_dataset(DataRequest("cifar10", train_size=5, subset_seed=1), CPU, tmp_path)
    smaller_rows = {bytes(image.flatten().tolist()) for image in smaller.train_x}
    assert smaller_rows <= {bytes(image.flatten().tolist()) for image in sub.train_x}
    other = load_dataset(DataRequest("cifar10", train_size=7, subset_seed=2), CPU, tmp_path)
    assert not torch.equal(other.train_x, sub.train_x)
    with pytest.raises(ValueError, match="train subset of 21 images but the train split holds 20"):
        load_dataset(DataRequest("cifar10", train_size=21), CPU, tmp_path)
    with pytest.raises(ValueError, match="test subset of 7 images but the test split holds 6"):
        load_dataset(DataRequest("cifar10", test_size=7), CPU, tmp_path)


def test_the_process_cache_returns_the_same_object_and_stays_bounded(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    first = load_dataset(DataRequest("cifar10"), CPU, tmp_path)
    assert load_dataset(DataRequest("cifar10"), CPU, tmp_path) is first
    load_dataset(DataRequest("cifar10", train_size=5), CPU, tmp_path)
    assert load_dataset(DataRequest("cifar10"), CPU, tmp_path) is first
    load_dataset(DataRequest("cifar10", train_size=6), CPU, tmp_path)
    load_dataset(DataRequest("cifar10", train_size=7), CPU, tmp_path)
    assert load_dataset(DataRequest("cifar10"), CPU, tmp_path) is not first  # evicted


def test_synthetic_through_the_loader_is_raw_unaugmented_and_cached_on_disk(tmp_path: Path) -> None:
    options = {"per_class": 2, "train_per_class": 1, "draw_budget": 1000, "seed": 7}
    dataset = load_dataset(DataRequest("synthetic_cifar10", synthetic=options), CPU, tmp_path)
    assert (dataset.num_classes, dataset.input_size) == (10, 32)
    assert dataset.train_x.dtype == torch.float32 and dataset.info["normalisation"] is None
    cache = tmp_path / "cache" / "synthetic" / cache_file_name(2, 1, 1000, 7)
    assert cache.is_file() and dataset.info["cache_file"] == str(cache)
    info = dataset.info
    assert info["complete"] and info["draws_used"] <= 1000 and info["generation_seconds"] > 0
    assert info["train_class_counts"] == [1] * 10 and info["test_class_counts"] == [1] * 10
    # Default policy: no crop, no flip, no normalisation, even with augment=True.
    x, _ = next(dataset.train_batches(10, torch.Generator().manual_seed(0)))
    stored = {tuple(row.tolist()) for row in dataset.train_x.flatten(1)}
    assert all(tuple(row.tolist()) in stored for row in x.flatten(1))
    with pytest.raises(ValueError):
        load_dataset(DataRequest("synthetic_cifar10", synthetic={"per_class": 1}), CPU, tmp_path)


def test_caches_go_to_the_cache_dir_never_into_the_dataset_files_folder(tmp_path: Path) -> None:
    # The datasets folder is often a read-only shared mount (docker-compose mounts it :ro).
    files, cache = tmp_path / "datasets", tmp_path / "data" / "cache"
    files.mkdir()
    options = {"per_class": 2, "train_per_class": 1, "draw_budget": 1000, "seed": 8}
    dataset = load_dataset(DataRequest("synthetic_cifar10", synthetic=options), CPU, files, cache_dir=cache)
    assert dataset.info["cache_file"] == str(cache / "synthetic" / cache_file_name(2, 1, 1000, 8))
    assert list(files.iterdir()) == []


def test_caches_written_by_older_releases_are_adopted_once(tmp_path: Path) -> None:
    from app.catalog.datasets import adopt_legacy_cache

    files, cache = tmp_path / "datasets", tmp_path / "cache"
    old = files / "cache" / "synthetic" / "set.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"generated once")
    note = adopt_legacy_cache(files, cache)
    assert note is not None and note.startswith("dataset cache: moved ") and "synthetic" in note
    assert (cache / "synthetic" / "set.pt").read_bytes() == b"generated once" and not old.exists()
    assert adopt_legacy_cache(files, cache) is None  # nothing left to move
    # A cache already in place wins: the old copy is left where it is.
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"stale")
    assert adopt_legacy_cache(files, cache) is None and old.exists()
    assert (cache / "synthetic" / "set.pt").read_bytes() == b"generated once"
