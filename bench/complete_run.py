"""Finish a recorded harness run whose service is gone: run its unfinished evaluations again and merge.

A harness run keeps its results in ``--out`` (``run.json`` and ``export.csv``), but its service data
(SQLite, broker) usually lives on a machine that is gone by the time someone wants the evaluations an
operator cancelled for time. Re-running the whole experiment would repeat hours of finished work. This
tool submits only the unfinished evaluations of one method, with the method entry exactly as
``run.json`` recorded it, and merges them back into ``export.csv``:

- a new evaluation replaces an old row only when its config hash (the stored result's identity) is the
  old row's; any mismatch aborts before waiting, so a run is never completed with a different recipe;
- every other row sharing that identity and left unfinished (a funnel alias of the same method, which
  the service would have linked to the same evaluation) is completed from the same evaluation;
- the merged rows keep their item position, label and alias, carry the completing batch's id, and
  ``completion.json`` records what was replaced; the first completion keeps the original as
  ``export_partial.csv``.

    python -m bench.complete_run --run bench/results/cifar10_cpu_published_run --method fear \\
        --datasets-dir /tmp/fastarchrank-datasets --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api_client import ServiceClient, format_duration
from bench.embedded import EmbeddedService
from bench.harness import machine_description

UNFINISHED = frozenset({"cancelled", "failed", "lost", "queued", "running"})
# The fields an evaluation owns; the item's position, label, alias and ground truth stay the run's.
EVALUATION_FIELDS = (
    "evaluation_id",
    "status",
    "score",
    "score_kind",
    "finite",
    "reason",
    "cost_s",
    "attempts",
    "device",
    "worker",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "timings",
    "info",
    "config",
)


class CompletionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Recorded:
    """One harness run as its output folder holds it."""

    run: dict[str, Any]
    header: list[str]
    rows: list[dict[str, str]]

    @classmethod
    def load(cls, run_dir: Path) -> Recorded:
        run = json.loads((run_dir / "run.json").read_text())
        with (run_dir / "export.csv").open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        return cls(run, header, rows)

    def method_entry(self, alias: str) -> dict[str, Any]:
        """The method as the batch asked for it (a plain method or a funnel stage)."""
        request = self.run["request"]
        stages = request.get("options", {}).get("funnel", {}).get("then", [])
        for entry in [*request["methods"], *stages]:
            if entry.get("alias", entry["name"]) == alias:
                return dict(entry)
        raise CompletionError(f"run.json has no method with alias {alias!r}")

    def unfinished(self, alias: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["method"] == alias and r["status"] in UNFINISHED]


def completion_body(recorded: Recorded, alias: str, rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    request = recorded.run["request"]
    by_label = {item["label"]: item for item in request["items"]}
    items = [by_label[r["label"]] for r in rows]
    return {
        "space": request["space"],
        "dataset": request["dataset"],
        "methods": [recorded.method_entry(alias)],
        "items": items,
        "seed": request.get("seed", 0),
    }


def merge(
    recorded: Recorded, new_rows: Sequence[dict[str, str]], batch_id: str
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """The export with every unfinished row whose identity the new rows cover completed from them."""
    fresh = {(r["architecture_key"], r["config_hash"]): r for r in new_rows if r["status"] not in UNFINISHED}
    merged: list[dict[str, str]] = []
    replaced: dict[str, int] = {}
    for row in recorded.rows:
        new = fresh.get((row["architecture_key"], row["config_hash"]))
        if row["status"] in UNFINISHED and new is not None:
            row = {**row, **{f: new[f] for f in EVALUATION_FIELDS if f in new}, "batch_id": batch_id}
            replaced[row["method"]] = replaced.get(row["method"], 0) + 1
        merged.append(row)
    return merged, replaced


def check_identity(old: Sequence[dict[str, str]], new: Sequence[dict[str, str]]) -> None:
    expected = {r["architecture_key"]: r["config_hash"] for r in old}
    wrong = [r["label"] for r in new if expected.get(r["architecture_key"]) != r["config_hash"]]
    if wrong:
        raise CompletionError(
            f"{len(wrong)} of {len(new)} evaluations resolve to another config hash than the run's "
            f"(e.g. {wrong[:3]}): this code's recipe differs from the recorded one, so completing the run "
            "would mix two recipes"
        )


def read_export(client: ServiceClient, batch_id: str) -> list[dict[str, str]]:
    text = client.get_text(f"/v1/batches/{batch_id}/export.csv")
    return list(csv.DictReader(text.splitlines()))


def complete(
    run_dir: Path,
    alias: str,
    *,
    url: str | None,
    datasets_dir: Path | None,
    data_dir: Path,
    workers: int,
    torch_threads: int,
) -> dict[str, Any]:
    recorded = Recorded.load(run_dir)
    todo = recorded.unfinished(alias)
    if not todo:
        raise CompletionError(f"every {alias!r} evaluation of {run_dir} is finished: nothing to do")
    body = completion_body(recorded, alias, todo)
    started = time.monotonic()
    service: contextlib.AbstractContextManager[str] = (
        EmbeddedService(
            data_dir,
            datasets_dir=datasets_dir,
            env={"FASTARCHRANK_TORCH_THREADS": str(torch_threads)},
            workers=workers,
        )
        if url is None
        else contextlib.nullcontext(url)
    )
    with service as service_url, ServiceClient(service_url) as client:
        batch_id = client.submit(body)["batch_id"]
        print(f"batch {batch_id}: {len(todo)} {alias!r} evaluations", file=sys.stderr, flush=True)
        check_identity(todo, read_export(client, batch_id))
        client.wait(batch_id, progress=True)
        new_rows = read_export(client, batch_id)
    merged, replaced = merge(recorded, new_rows, batch_id)
    partial = run_dir / "export_partial.csv"
    if not partial.exists():
        partial.write_text((run_dir / "export.csv").read_text())
    with (run_dir / "export.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=recorded.header)
        writer.writeheader()
        writer.writerows(merged)
    left = sum(1 for r in merged if r["status"] in UNFINISHED)
    completion = {
        "method": alias,
        "batch_id": batch_id,
        "request": body,
        "submitted": len(todo),
        "finished": sum(1 for r in new_rows if r["status"] not in UNFINISHED),
        "replaced_rows": replaced,
        "still_unfinished_rows": left,
        "wall_s": time.monotonic() - started,
        "machine": machine_description(),
        "workers": workers if url is None else None,
        "torch_threads": torch_threads,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    log = run_dir / "completion.json"
    history = json.loads(log.read_text()) if log.exists() else []
    log.write_text(json.dumps([*history, completion], indent=2))
    print(
        f"done in {format_duration(completion['wall_s'])}: replaced {replaced}, {left} rows still unfinished",
        file=sys.stderr,
    )
    return completion


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--run", type=Path, required=True, help="the harness run's output folder")
    parser.add_argument("--method", required=True, help="the method alias to complete (e.g. fear)")
    parser.add_argument("--url", default=None, help="a running service; default: start an embedded one")
    parser.add_argument(
        "--datasets-dir", type=Path, default=None, help="dataset files for the embedded service"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="embedded service data (default: <run>/completion-data)"
    )
    parser.add_argument("--workers", type=int, default=2, help="embedded worker processes")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per worker")
    args = parser.parse_args(argv)
    try:
        complete(
            args.run,
            args.method,
            url=args.url,
            datasets_dir=args.datasets_dir,
            data_dir=args.data_dir or args.run / "completion-data",
            workers=args.workers,
            torch_threads=args.torch_threads,
        )
    except CompletionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
