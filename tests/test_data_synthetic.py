"""The synthetic CIFAR-10 replacement: determinism, labels, caps, split, budget and the shared disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from worker.data.synthetic import cache_file_name, generate_synthetic, load_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 7
BUDGET = 300  # a few hundred draws keep each generation around a second on 2 CPU cores


@pytest.fixture(scope="module")
def small() -> dict:
    return generate_synthetic(per_class=5, train_per_class=3, draw_budget=BUDGET, seed=SEED)


def reference_draws(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Independently of the implementation: seed the global generator, build the 10 nets as modules
    (PyTorch's default init), draw HWC images and label them by the argmax of the nets' scores."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = [nn.Sequential(nn.Linear(3072, 3072), nn.ReLU(), nn.Linear(3072, 1)) for _ in range(10)]
        images = torch.randn(count, 32, 32, 3)
    with torch.no_grad():
        scores = torch.cat([net(images.reshape(count, -1)) for net in nets], dim=1)
    return images, scores.argmax(dim=1)


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, torch.Tensor]:
    return reference_draws(SEED, BUDGET)


def test_labels_are_the_argmax_of_the_recreated_nets_first_come_first_served(
    small: dict, reference: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = reference
    taken = [0] * 10
    expected: dict[str, list[int]] = {"train": [], "test": []}
    for draw, label in enumerate(labels.tolist()):
        if taken[label] < 5:
            expected["train" if taken[label] < 3 else "test"].append(draw)
            taken[label] += 1
    for split in ("train", "test"):
        chosen = torch.tensor(expected[split])
        assert torch.equal(small[f"{split}_y"], labels[chosen])
        # Stored CHW: the stored image is the HWC draw with channels moved first.
        assert torch.equal(small[f"{split}_x"], images[chosen].permute(0, 3, 1, 2))
    assert small["train_x"].dtype == torch.float32 and small["train_x"].is_contiguous()


def test_caps_split_and_budget_hold(small: dict) -> None:
    info = small["info"]
    train_counts = torch.bincount(small["train_y"], minlength=10)
    test_counts = torch.bincount(small["test_y"], minlength=10)
    assert train_counts.tolist() == info["generated_train_class_counts"]
    assert test_counts.tolist() == info["generated_test_class_counts"]
    assert (train_counts + test_counts).max() == 5
    # A class only has test images once its train share is full.
    assert all(test == 0 or train == 3 for train, test in zip(train_counts, test_counts, strict=True))
    # With 300 draws the rarest class cannot fill, so the whole budget was used.
    assert (train_counts + test_counts).min() < 5
    assert info["draws_used"] == BUDGET and info["complete"] is False
    assert info["generation_seconds"] > 0 and info["labelled_on"] == "cpu"


def test_another_seed_gives_other_data(small: dict) -> None:
    other = generate_synthetic(per_class=5, train_per_class=3, draw_budget=16, seed=SEED + 1)
    assert not torch.equal(other["train_x"][:3], small["train_x"][:3])


def test_drawing_stops_when_every_class_is_full(reference: tuple[torch.Tensor, torch.Tensor]) -> None:
    labels = reference[1]
    # With one image per class, the last class fills at the latest first appearance of any class.
    last_needed = max(int((labels == k).nonzero().min()) for k in range(10))
    full = generate_synthetic(per_class=1, train_per_class=1, draw_budget=BUDGET, seed=SEED)
    assert full["info"]["complete"] is True and full["info"]["draws_used"] == last_needed + 1 < BUDGET
    assert sorted(full["train_y"].tolist()) == list(range(10)) and full["test_y"].numel() == 0
    short = generate_synthetic(per_class=1, train_per_class=1, draw_budget=last_needed, seed=SEED)
    assert short["info"]["complete"] is False and short["train_y"].numel() == 9


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="train_per_class"):
        generate_synthetic(per_class=3, train_per_class=4, draw_budget=100, seed=0)


def test_disk_cache_is_keyed_by_the_options_and_reproduces_bit_for_bit(tmp_path: Path, small: dict) -> None:
    first = load_synthetic(5, 3, BUDGET, SEED, tmp_path)
    assert first.info["generated_now"] is True
    assert Path(first.source).name == cache_file_name(5, 3, BUDGET, SEED)
    # A second, independent generation gives identical tensors.
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, key), small[key]), key
    second = load_synthetic(5, 3, BUDGET, SEED, tmp_path)
    assert second.info["generated_now"] is False
    assert torch.equal(second.train_x, small["train_x"]) and torch.equal(second.test_y, small["test_y"])
    assert second.info["draws_used"] == BUDGET
    assert cache_file_name(5, 3, BUDGET, SEED + 1) != cache_file_name(5, 3, BUDGET, SEED)


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    cache_dir, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    from worker.data.synthetic import load_synthetic  # import torch before the rendezvous
    (cache_dir / f"ready-{me}").touch()
    while not (cache_dir / f"ready-{other}").exists():
        time.sleep(0.005)
    raw = load_synthetic(5, 3, 300, 7, cache_dir)
    print(json.dumps({"generated_now": raw.info["generated_now"], "sum": raw.train_x.double().sum().item(),
                      "labels": raw.train_y.tolist()}))
    """
)


def test_two_processes_generating_at_once_share_one_valid_file(tmp_path: Path, small: dict) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), me, other],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    results = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    # The lock makes the second process wait and read the first one's file instead of generating.
    assert sorted(result["generated_now"] for result in results) == [False, True]
    assert results[0]["sum"] == results[1]["sum"] == small["train_x"].double().sum().item()
    assert results[0]["labels"] == results[1]["labels"] == small["train_y"].tolist()
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ready-"))
    assert names == [cache_file_name(5, 3, 300, 7), cache_file_name(5, 3, 300, 7) + ".lock"]
