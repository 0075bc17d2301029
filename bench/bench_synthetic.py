"""Synthetic CIFAR-10 generation speed: a zero-cost prefix vs the full set, the old generator vs the new.

    python -m bench.bench_synthetic [--draws 4096] [--device cpu|cuda] [--out bench/results/synthetic.md]

Measured in one run, same process, same machine load:
- prefix: what a zero-cost batch costs now, the first 64 and 128 train images at the default (paper)
  options, from nothing (labelling nets included);
- full: ``--draws`` draws of the full-set generator (old and new), as draws/s and images kept/s. The
  paper-size set (6000 per class) needs essentially the whole 1e6-draw budget (the rarest class is
  ~0.6% of draws), so its time is extrapolated from the measured rate: draws_needed / draws_per_s plus
  the labelling nets' set-up. The report says it is an extrapolation.
The old generator is the previous implementation read from git (``OLD_COMMIT``): float32 argmax, cache
name per device.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from worker.data.synthetic import generate_synthetic

OLD_COMMIT = "52a3401"  # the last commit with the float32, device-named generator
PAPER = {"per_class": 6000, "train_per_class": 5000, "draw_budget": 1_000_000, "seed": 42}
PAPER_DRAWS = 1_000_000  # the paper size exhausts (nearly) all of its budget


@dataclass
class Row:
    what: str
    generator: str
    device: str
    draws: int
    images: int
    seconds: float

    @property
    def draws_per_s(self) -> float:
        return self.draws / self.seconds

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def old_generator() -> types.ModuleType | None:
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:worker/data/synthetic.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_synthetic")
    exec(compile(source, "old_synthetic.py", "exec"), module.__dict__)  # the project's own history
    return module


def timed(what: str, generator: str, device: torch.device, fn: types.FunctionType | object) -> Row:
    start = time.perf_counter()
    out = fn()  # type: ignore[operator]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    images = int(out["train_y"].numel() + out["test_y"].numel())
    return Row(what, generator, str(device), int(out["info"]["draws_used"]), images, seconds)


def nets_setup_s() -> float:
    from worker.data.synthetic import build_labelling_nets

    start = time.perf_counter()
    build_labelling_nets(torch.Generator().manual_seed(42))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4096, help="draws timed for the full-set rate")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2, help="alternating old/new runs; best is kept")
    parser.add_argument("--out", type=Path, default=Path("bench/results/synthetic.md"))
    args = parser.parse_args()
    device = torch.device(args.device)
    p = PAPER
    paper = (p["per_class"], p["train_per_class"], p["draw_budget"], p["seed"])
    rows: list[Row] = []
    for n in (64, 128):
        rows.append(
            timed(
                f"prefix {n} train images",
                "new",
                device,
                lambda n=n: generate_synthetic(*paper, device, train_prefix=n),
            )
        )
    # Full-set rate: the paper options with the budget cut to --draws (the same stream, stopped early).
    # The old generator runs first so that any warm-up favours it, not the new one.
    cut = (p["per_class"], p["train_per_class"], args.draws, p["seed"])
    old = old_generator()
    best: dict[str, Row] = {}
    for _ in range(args.repeats):  # alternate old/new; keep each one's best (the machine is shared)
        for name, module in (("old", old), ("new", None)):
            if name == "old" and module is None:
                continue
            gen = module.generate_synthetic if module is not None else generate_synthetic
            row = timed(f"full, first {args.draws} draws", name, device, lambda gen=gen: gen(*cut, device))
            if name not in best or row.seconds < best[name].seconds:
                best[name] = row
    rows += list(best.values())
    setup = nets_setup_s()
    lines = [
        "# Synthetic CIFAR-10 generation (`python -m bench.bench_synthetic`)",
        "",
        f"Device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads. Times include"
        f" building the 10 labelling nets ({setup:.1f} s here).",
        "",
        "| what | generator | draws | images kept | seconds | draws/s | images/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.what} | {r.generator} | {r.draws} | {r.images} | {r.seconds:.2f} | {r.draws_per_s:.0f} "
            f"| {r.images_per_s:.0f} |"
        )
    full_rows = {r.generator: r for r in rows if r.what.startswith("full")}
    new_rate = (full_rows["new"].draws - 0) / max(full_rows["new"].seconds - setup, 1e-9)
    extrapolated = setup + PAPER_DRAWS / new_rate
    lines += [
        "",
        f"Paper-size set (60,000 images, ~{PAPER_DRAWS:,} draws) on {device}: "
        f"**~{extrapolated / 60:.0f} min, extrapolated** from the {args.draws}-draw rate "
        f"({new_rate:.0f} draws/s after set-up), not measured.",
    ]
    if "old" in full_rows:
        ratio = full_rows["old"].seconds / full_rows["new"].seconds
        lines.append(f"New vs old generator on the same draws: {ratio:.2f}x the speed (same run).")
    prefix = rows[0]
    lines.append(
        f"A zero-cost batch of 64 now costs {prefix.seconds:.1f} s of generation instead of the full set's "
        f"~{extrapolated / 60:.0f} min: {extrapolated / prefix.seconds:.0f}x."
    )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "paper_size_extrapolated_s": extrapolated}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
