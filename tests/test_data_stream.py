"""The synthetic set as one stream: prefixes, device- and chunk-independent labels, progress, fixed batches.

(File name kept under tests/test_data_*.py: the data helper's tests.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker.data import DataRequest, GenerationProgress, clear_cache, load_dataset, request_from_config
from worker.data.fixed_batch_dataset import FixedBatchDataset
from worker.data.synthetic import (
    RELABEL_MARGIN,
    cache_file_name,
    float64_scores,
    generate_synthetic,
    load_synthetic,
    score_images,
)

CPU = torch.device("cpu")
SIZES = {"per_class": 12, "train_per_class": 8, "draw_budget": 1000, "seed": 3}  # the API's minimum budget
ARGS = (12, 8, 300, 3)  # generator-level tests: fewer draws
# The stream does not depend on the budget, only where it stops: a prefix shorter than what either
# budget reaches is the same for both, which lets the loader tests compare with ``full``.


@pytest.fixture(scope="module")
def full() -> dict:
    return generate_synthetic(*ARGS, draws_per_chunk=128)


def test_the_first_n_train_images_are_the_same_whether_n_or_the_full_set_is_generated(full: dict) -> None:
    for n, chunk in ((1, 64), (37, 50), (64, 1000)):
        prefix = generate_synthetic(*ARGS, train_prefix=n, draws_per_chunk=chunk)
        assert torch.equal(prefix["train_x"], full["train_x"][:n])
        assert torch.equal(prefix["train_y"], full["train_y"][:n])
        assert prefix["test_x"].shape == (0, 3, 32, 32) and prefix["info"]["complete"]
        # It stopped at the draw that completed the prefix, not at the end of a chunk.
        assert prefix["info"]["draws_used"] < full["info"]["draws_used"]
    # A prefix longer than the train split is the whole train split, flagged incomplete.
    whole = generate_synthetic(*ARGS, train_prefix=10_000)
    assert torch.equal(whole["train_y"], full["train_y"]) and not whole["info"]["complete"]


def test_labels_do_not_depend_on_chunk_size_or_thread_count(full: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        other = generate_synthetic(*ARGS, draws_per_chunk=77)
    finally:
        torch.set_num_threads(threads)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(other[key], full[key]), key
    assert other["info"]["labels_sha256"] == full["info"]["labels_sha256"]


def _other_device(nets: tuple[torch.Tensor, ...]):
    """A device that rounds differently: every score off by up to 10x the largest float32 error
    measured (5e-7), in a direction that changes from draw to draw."""
    noise = torch.Generator().manual_seed(99)

    def scores(flat: torch.Tensor) -> torch.Tensor:
        s = score_images(flat, nets)
        return s + (torch.rand(s.shape, generator=noise) - 0.5) * 1e-5

    return scores


def _tied_device(nets: tuple[torch.Tensor, ...]):
    """A device whose float32 scores are useless (all tied): every label must come from float64."""
    return lambda flat: torch.zeros(flat.shape[0], 10)


def test_a_device_with_other_rounding_gives_bit_identical_labels(full: dict) -> None:
    simulated = generate_synthetic(*ARGS, fast_scores=_other_device)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(simulated[key], full[key]), key
    tied = generate_synthetic(*ARGS, fast_scores=_tied_device, train_prefix=20)
    assert torch.equal(tied["train_y"], full["train_y"][:20])
    assert tied["info"]["float64_relabelled"] >= tied["info"]["draws_used"]  # its whole chunk


def test_labels_are_the_float64_argmax() -> None:
    from worker.data.synthetic import build_labelling_nets

    generator = torch.Generator().manual_seed(SIZES["seed"])
    nets = build_labelling_nets(generator)
    images = torch.randn(64, 3072, generator=generator)
    reference = float64_scores(images, nets)
    fast = score_images(images, nets).double()
    assert (fast - reference).abs().max() < RELABEL_MARGIN / 20  # the margin is far above float32 error
    from worker.data.synthetic import certified_labels

    labels, _ = certified_labels(images, nets, lambda flat: score_images(flat, nets))
    assert torch.equal(labels, reference.argmax(dim=1))


def test_cache_name_and_content_do_not_depend_on_the_device(tmp_path: Path) -> None:
    written = load_synthetic(*ARGS, tmp_path, CPU, train_prefix=10)
    assert Path(written.source).name == cache_file_name(*ARGS, train_prefix=10)
    assert "cuda" not in cache_file_name(*ARGS) and "cpu" not in cache_file_name(*ARGS)
    # A CUDA worker finds the CPU worker's file (it never needs CUDA to read it).
    read = load_synthetic(*ARGS, tmp_path, torch.device("cuda"), train_prefix=10)
    assert read.info["generated_now"] is False and read.source == written.source
    assert torch.equal(read.train_y, written.train_y)


def test_generation_reports_progress_per_class_and_share_of_the_budget() -> None:
    seen: list[GenerationProgress] = []
    out = generate_synthetic(*ARGS, draws_per_chunk=64, progress=seen.append)
    last = seen[-1]
    assert last.wanted == "full" and last.draws == out["info"]["draws_used"] and last.draw_budget == 300
    assert sum(last.accepted_per_class) == out["train_y"].numel() + out["test_y"].numel()
    fields = last.fields()
    assert fields["draw_budget_pct"] == round(100 * last.draws / 300, 1)
    assert fields["accepted_per_class"] == list(last.accepted_per_class) and fields["per_class"] == 12


def test_a_fixed_batch_only_request_generates_just_the_prefix(tmp_path: Path, full: dict) -> None:
    clear_cache()
    request = request_from_config("synthetic_cifar10", {"synthetic": SIZES, "fixed_batch_only": True})
    assert request.fixed_batch_only
    reports: list[GenerationProgress] = []
    dataset = load_dataset(request, CPU, tmp_path, reports.append)
    assert isinstance(dataset, FixedBatchDataset) and reports == []  # nothing generated yet
    x, y = dataset.fixed_batch(16, seed=5)
    cache = tmp_path / "cache" / "synthetic"
    assert sorted(p.name for p in cache.glob("*.pt")) == [cache_file_name(*SIZES.values(), train_prefix=16)]
    assert reports and reports[-1].wanted == "first 16 train images"
    order = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, full["train_x"][:16][order]) and torch.equal(y, full["train_y"][:16][order])
    # A later request (another evaluation) gets the cached object, reporting to its own callback.
    later: list[GenerationProgress] = []
    assert load_dataset(request, CPU, tmp_path, later.append) is dataset
    dataset.fixed_batch(12, seed=5)
    assert (
        later
        and later[-1].wanted == "first 12 train images"
        and reports[-1].wanted.endswith("16 train images")
    )
    with pytest.raises(RuntimeError, match="fixed batches only"):
        next(iter(dataset.train_batches(4, torch.Generator())))
    # Once the full set exists, the prefix is cut from it: the same batch, no new generation.
    clear_cache()
    load_dataset(DataRequest("synthetic_cifar10", synthetic=SIZES), CPU, tmp_path)
    (cache / cache_file_name(*SIZES.values(), train_prefix=16)).unlink()
    again = load_dataset(request, CPU, tmp_path)
    assert torch.equal(again.fixed_batch(16, seed=5)[0], x)
    assert not (cache / cache_file_name(*SIZES.values(), train_prefix=16)).exists()
    clear_cache()


def test_a_train_subset_still_reads_the_full_split(tmp_path: Path) -> None:
    clear_cache()
    request = DataRequest("synthetic_cifar10", train_size=20, synthetic=SIZES, fixed_batch_only=True)
    dataset = load_dataset(request, CPU, tmp_path)
    assert not isinstance(dataset, FixedBatchDataset) and dataset.info["train_size"] == 20
    clear_cache()


def test_zero_cost_at_paper_size_on_a_fresh_data_dir_reads_only_its_batches(tmp_path: Path) -> None:
    """params/synflow/naswot/jacob_cov at their defaults (6000 per class, 1e6 draw budget): without the
    prefix this generates 60,000 images (half an hour on 2 cores); with it, 128 + 64 images."""
    from tests.zero_cost_support import LocalContext, requests_for
    from worker.methods.zero_cost.runner import run_zero_cost

    clear_cache()
    ctx = LocalContext()
    ctx.dataset = lambda name, config: load_dataset(request_from_config(name, config), CPU, tmp_path)  # type: ignore[method-assign]
    requests = requests_for(
        [("params", {"network": {"C": 8, "N": 1}})]
        + [(m, {"network": {"C": 8, "N": 1}}) for m in ("synflow", "naswot", "jacob_cov")],
        genotype="|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
        dataset="synthetic_cifar10",
    )
    results = run_zero_cost(requests, ctx)
    assert [r.status for r in results] == ["done"] * 4
    names = sorted(p.name for p in (tmp_path / "cache" / "synthetic").glob("*.pt"))
    assert names == sorted(cache_file_name(6000, 5000, 1_000_000, 42, train_prefix=n) for n in (64, 128))
    clear_cache()
