"""The experiment harness: one batch through the service's API, the paper-style outputs on disk.

    python -m bench.harness run --experiment synthetic/tiny [--url URL] [--n-archs N] [--out DIR]
                               [--datasets-dir DIR] [--seed S]
    python -m bench.harness list
    python -m bench.harness run --experiment cifar10/cpu --datasets-dir /tmp/fastarchrank-datasets
    python -m bench.harness run --experiment cifar10/cpu-published ... \
        --ground-truth-file ../shared/data/nb201_cifar10_test_acc_fear1000.csv \
        --ground-truth-key nb201_index --ground-truth-column cifar10_test_top1_200ep \
        --ground-truth-name nb201-cifar10-test-200ep

Without ``--url`` the harness starts its own embedded service (`python -m app.cli serve`) on a fresh
data directory inside the results folder and stops it at the end. The results folder receives
report.json, report.md (the API's own Markdown), score_vs_ground_truth.png, cost_vs_spearman.png,
export.csv, export.json, run.json (what was run) and summary.md (see bench/summary.py).

With ``--ground-truth-file`` the harness uploads the file's accuracies of the batch's architectures as a
named ground-truth set (the client's ``put_ground_truth``), writes report_published.json /
report_published.md against it, and summary.md reports every method (``full`` included) against it
beside the in-service ``full``, each table naming the ground truth it uses.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import summary
from bench.api_client import FastArchRankError, ServiceClient, ServiceError, format_duration
from bench.embedded import REPO_ROOT, EmbeddedService
from bench.experiments import EXPERIMENTS, FEAR_ALIAS, GROUND_TRUTH_ALIAS, Experiment, get_experiment

EXTRACT_HINT = (
    "extract the image folder outside the repository, e.g. `mkdir -p /tmp/fastarchrank-datasets && "
    "tar xzf /work/shared/data/cifar10-jpg.tar.gz -C /tmp/fastarchrank-datasets`, then pass "
    "--datasets-dir /tmp/fastarchrank-datasets"
)


def warn(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nWARNING: {message}\n{bar}\n", file=sys.stderr, flush=True)


def default_out_dir(experiment: Experiment) -> Path:
    return REPO_ROOT / "bench" / "results" / experiment.name.replace("/", "-")


def parse_overrides(items: Sequence[str]) -> list[tuple[str, list[str], Any]]:
    """``alias.key[.sub]=value`` → (alias, path, value); the value is JSON if it parses, else text."""
    parsed = []
    for item in items:
        target, sep, raw = item.partition("=")
        alias, _, path = target.partition(".")
        if not sep or not alias or not path:
            raise ValueError(f"--set {item!r}: write alias.key=value, e.g. full.epochs=30")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parsed.append((alias, path.split("."), value))
    return parsed


def apply_overrides(body: dict[str, Any], overrides: Sequence[tuple[str, list[str], Any]]) -> None:
    """Set config values of the batch's method entries in place (the API validates them)."""
    by_alias = {m["alias"]: m for m in body["methods"]}
    for alias, path, value in overrides:
        entry = by_alias.get(alias)
        if entry is None:
            raise ValueError(f"--set names method alias {alias!r}; this experiment has {', '.join(by_alias)}")
        node = entry.setdefault("config", {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value


def check_methods(client: ServiceClient, experiment: Experiment) -> None:
    """Fail before submitting if the service lacks a method or preset the experiment needs."""
    catalog = client.methods(experiment.space, experiment.dataset)
    problems = []
    for entry in experiment.methods():
        info = catalog.get(entry.name)
        if info is None:
            problems.append(f"method {entry.name!r} is not offered by the service")
        elif entry.preset is not None and entry.preset not in info.get("presets", {}):
            problems.append(f"method {entry.name!r} has no preset {entry.preset!r}")
        elif entry.preset is not None and "unavailable" in info["presets"][entry.preset]:
            problems.append(f"{entry.name}@{entry.preset}: {info['presets'][entry.preset]['unavailable']}")
    if problems:
        raise ServiceError("the service cannot run this experiment: " + "; ".join(problems))


def check_dataset(client: ServiceClient, dataset: str) -> dict[str, Any]:
    """The service's description of ``dataset``; fails early (with the fix) if its files are absent."""
    info = client.dataset(dataset)
    availability = info.get("availability", {})
    if info.get("source") != "generated" and not availability.get("present", False):
        raise ServiceError(
            f"dataset {dataset!r} is missing at {availability.get('path')} "
            f"(missing: {', '.join(availability.get('missing', []))}); {EXTRACT_HINT}"
        )
    return info


@dataclass(frozen=True)
class PublishedGroundTruth:
    """Accuracies (percent) of a published benchmark, by the key the file names them with."""

    name: str  # the ground-truth set name in the service
    key: str  # nb201_index, index or genotype
    column: str
    values: dict[int | str, float]
    path: Path

    def item(self, key: int | str, value: float) -> dict[str, Any]:
        return {("nb201_index" if self.key == "nb201_index" else self.key): key, "value": value}


GROUND_TRUTH_KEYS = ("nb201_index", "index", "genotype")


def load_ground_truth_file(path: Path, key: str, column: str, name: str) -> PublishedGroundTruth:
    """Read a CSV of published accuracies; every error names the file, the column and the fix."""
    if key not in GROUND_TRUTH_KEYS:
        raise ValueError(f"--ground-truth-key must be one of {', '.join(GROUND_TRUTH_KEYS)}, got {key!r}")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--ground-truth-file {path}: {exc.strerror or exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    for wanted, flag in ((key, "--ground-truth-key"), (column, "--ground-truth-column")):
        if wanted not in header:
            raise ValueError(f"{path} has no column {wanted!r} ({flag}); its columns: {', '.join(header)}")
    values: dict[int | str, float] = {}
    for line, row in enumerate(reader, start=2):
        raw_key, raw_value = (row.get(key) or "").strip(), (row.get(column) or "").strip()
        if not raw_value:
            continue  # no published value for this architecture
        try:
            ident: int | str = int(raw_key) if key != "genotype" else raw_key
            value = float(raw_value)
        except ValueError:
            raise ValueError(
                f"{path}:{line}: {key}={raw_key!r}, {column}={raw_value!r} is not a number"
            ) from None
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise ValueError(f"{path}:{line}: {column}={value} is not an accuracy in percent (0..100)")
        values[ident] = value
    if not values:
        raise ValueError(f"{path}: no values in column {column!r}")
    return PublishedGroundTruth(name=name, key=key, column=column, values=values, path=path)


def upload_ground_truth(
    client: ServiceClient, batch_id: str, published: PublishedGroundTruth, arch_ids: Sequence[int]
) -> int:
    """PUT the published values of the batch's architectures; returns how many were sent."""
    if published.key == "genotype":
        items = [published.item(k, v) for k, v in published.values.items()]
        skip = True  # which genotypes the batch holds is the server's to say
    else:
        items = [
            published.item(i, published.values[i]) for i in dict.fromkeys(arch_ids) if i in published.values
        ]
        skip = False
    if not items:
        raise ValueError(f"{published.path} has no value for any architecture of batch {batch_id}")
    client.client.batch(batch_id).put_ground_truth(published.name, items, skip_unknown=skip)
    return len(items)


def fetch_published(
    client: ServiceClient, batch_id: str, out_dir: Path, published: PublishedGroundTruth
) -> dict[str, Any]:
    """The report against the published set (every method, full included), written beside the others."""
    report = client.report(batch_id, ground_truth=published.name)
    (out_dir / "report_published.json").write_text(json.dumps(report, indent=2))
    markdown = client.report(batch_id, ground_truth=published.name, fmt="markdown")
    (out_dir / "report_published.md").write_text(markdown)
    return report  # type: ignore[no-any-return]


def fetch_funnel(client: ServiceClient, batch_id: str, out_dir: Path, ground_truth: str) -> dict[str, Any]:
    """A funnel batch's report with the batch itself as the reference (its methods ran on everything)."""
    report = client.get_json(
        f"/v1/batches/{batch_id}/report", ground_truth=ground_truth, reference_batch=batch_id
    )
    (out_dir / "report_funnel.json").write_text(json.dumps(report, indent=2))
    return report  # type: ignore[no-any-return]


def fetch_outputs(
    client: ServiceClient, batch_id: str, out_dir: Path, ground_truth: str = f"method:{GROUND_TRUTH_ALIAS}"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write every API output of the batch into ``out_dir``; return (report, export)."""
    report = client.report(batch_id, ground_truth=ground_truth)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(client.report(batch_id, ground_truth=ground_truth, fmt="markdown"))
    plots = {
        "score_vs_ground_truth.png": {"ground_truth": ground_truth},
        "cost_vs_spearman.png": {"ground_truth": ground_truth},
    }
    for name, params in plots.items():
        (out_dir / name).write_bytes(client.get_bytes(f"/v1/batches/{batch_id}/plots/{name}", **params))
    (out_dir / "export.csv").write_text(client.get_text(f"/v1/batches/{batch_id}/export.csv"))
    export = client.export_json(batch_id)
    (out_dir / "export.json").write_text(json.dumps(export, indent=1))
    return report, export


def build_summary(
    experiment: Experiment,
    run: dict[str, Any],
    report: dict[str, Any],
    export: dict[str, Any],
    num_classes: int,
    published: tuple[PublishedGroundTruth, dict[str, Any]] | None = None,
    funnel_report: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """summary.md's text and the sanity verdict (``published``: the file and the report against it)."""
    rows = export["rows"]
    in_service = experiment.include_full or published is None
    truth = (
        summary.ground_truth_percent(rows, GROUND_TRUTH_ALIAS)
        if in_service
        else published_truth(rows, published[0])  # type: ignore[index]
    )
    gt_label = f"method:{GROUND_TRUTH_ALIAS}" if in_service else published[0].name  # type: ignore[index]
    sanity = summary.ground_truth_sanity(list(truth.values()), num_classes)
    scores = summary.scores_by_method(rows)
    oriented = {
        alias: {
            k: (v if report["methods"][alias].get("higher_is_better", True) else -v) for k, v in s.items()
        }
        for alias, s in scores.items()
        if alias in report["methods"]
    }
    reference = FEAR_ALIAS if FEAR_ALIAS in report["methods"] else report.get("reference", FEAR_ALIAS)
    deltas = {
        alias: summary.paired_spearman_difference(truth, s, oriented.get(reference, {}))
        for alias, s in oriented.items()
        if alias != reference
    }
    presets = {m["alias"]: m.get("preset") for m in export.get("methods", [])}
    reference_mean = report.get("costs", {}).get(reference, {}).get("mean_s")
    lines = [
        f"# {experiment.name}: ranking study through the service",
        "",
        f"{experiment.summary}.",
        "",
        f"- batch `{run['batch_id']}` on {'an embedded service' if run['embedded'] else run['service']} "
        f"({run['dataset']}, space {experiment.space}, seed "
        f"{run['seed']}), {run['n_archs']} architectures drawn from the FEAR paper's 1000 NB201 indices",
        f"- evaluations: {run['counts']}",
        f"- wall time: {_batch_wall_text(run)} for the batch, "
        f"{format_duration(run['total_wall_s'])} for this harness run "
        "(service start-up and downloads of the outputs included)",
        f"- date {run['finished_at']}; machine: {run['machine']}",
    ]
    changed = [
        f"`{m['alias']}` {json.dumps(m['config'])}" for m in run["request"]["methods"] if m.get("config")
    ]
    if changed:
        lines.append(f"- config on top of the presets: {', '.join(changed)}")
    lines += [
        "",
    ]
    if experiment.notes:
        lines += [f"Note: {experiment.notes}", ""]
    lines += summary.sanity_lines(sanity, gt_label)
    lines += summary.failure_lines(rows)
    lines += summary.correlation_lines(report, deltas, presets, reference)
    lines += summary.stage1_lines(rows, truth, reference)
    lines += summary.top_percent_lines(report, reference)
    gt_cost = summary.ground_truth_cost(rows, GROUND_TRUTH_ALIAS, reference_mean) if in_service else {}
    lines += summary.cost_lines(report, gt_cost, reference)
    if report.get("funnel"):
        lines += summary.funnel_lines(funnel_report or report)
    verdict: dict[str, Any] = {"sanity": sanity, "deltas": deltas}
    if published is not None and in_service:
        gt_file, pub_report = published
        pub_truth = published_truth(rows, gt_file)
        pub_sanity = summary.ground_truth_sanity(list(pub_truth.values()), num_classes)
        pub_oriented = {
            alias: {
                k: (v if pub_report["methods"][alias].get("higher_is_better", True) else -v)
                for k, v in s.items()
            }
            for alias, s in scores.items()
            if alias in pub_report["methods"]
        }
        pub_deltas = {
            alias: summary.paired_spearman_difference(pub_truth, s, pub_oriented.get(reference, {}))
            for alias, s in pub_oriented.items()
            if alias != reference
        }
        lines += summary.published_lines(
            pub_report,
            pub_deltas,
            presets,
            reference,
            pub_sanity,
            gt_file.name,
            f"method:{GROUND_TRUTH_ALIAS}",
        )
        verdict["published"] = {"name": gt_file.name, "sanity": pub_sanity, "deltas": pub_deltas}
    lines += [
        "## Files",
        "",
        "report.json / report.md (the API's correlation report), score_vs_ground_truth.png, "
        "cost_vs_spearman.png, export.csv / export.json (every evaluation with every stored field), "
        "run.json (what was run).",
        "",
    ]
    return "\n".join(lines), verdict


def published_truth(rows: Sequence[dict[str, Any]], published: PublishedGroundTruth) -> dict[str, float]:
    """Architecture key → published accuracy, for the architectures of the export."""
    out: dict[str, float] = {}
    for row in rows:
        ident = row.get("genotype") if published.key == "genotype" else row.get("index")
        if ident is not None and ident in published.values:
            out[str(row["architecture_key"])] = published.values[ident]
    return out


def service_wall_s(status: dict[str, Any], rows: Sequence[dict[str, Any]]) -> float | None:
    """From the batch's creation to its last evaluation's finish, by the service's clock: the same
    whether the harness watched the whole run or came back with --resume."""
    finished = [r["finished_at"] for r in rows if r.get("finished_at")]
    if not finished or not status.get("created_at"):
        return None
    return (as_utc(max(finished, key=as_utc)) - as_utc(status["created_at"])).total_seconds()


def as_utc(stamp: str) -> datetime:
    value = datetime.fromisoformat(stamp)
    # SQLite hands timestamps back without their zone; the service writes them in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _batch_wall_text(run: dict[str, Any]) -> str:
    service = run.get("batch_service_wall_s")
    if service is None:
        return format_duration(run["batch_wall_s"])
    return f"{format_duration(service)} (service clock, submission to last result)"


def machine_description() -> str:
    return f"{os.cpu_count()} CPU cores, {sys.platform}, Python {sys.version.split()[0]}"


def run_experiment(
    experiment: Experiment,
    *,
    url: str | None,
    out_dir: Path,
    n_archs: int | None = None,
    seed: int = 0,
    datasets_dir: Path | None = None,
    data_dir: Path | None = None,
    timeout_s: float | None = None,
    resume: str | None = None,
    torch_threads: int | None = None,
    workers: int | None = None,
    overrides: Sequence[str] = (),
    ground_truth: PublishedGroundTruth | None = None,
) -> dict[str, Any]:
    """Run one experiment end to end; returns run.json's content (plus the sanity verdict)."""
    if not experiment.include_full and ground_truth is None:
        raise ValueError(
            f"{experiment.name} runs no in-service ground truth (no 'full'); pass the published one: "
            f"{experiment.ground_truth_hint or '--ground-truth-file FILE --ground-truth-column COLUMN'}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    arch_ids = experiment.architectures(n_archs, seed)
    embedded = url is None
    with ExitStack() as stack:
        if url is None:
            threads = torch_threads or experiment.torch_threads
            env = {"FASTARCHRANK_TORCH_THREADS": str(threads)} if threads else None
            service = EmbeddedService(
                data_dir or out_dir / "service-data",
                datasets_dir=datasets_dir,
                env=env,
                workers=workers or experiment.workers,
            )
            print(
                f"starting the embedded service (data in {service.data_dir}) ...", file=sys.stderr, flush=True
            )
            url = stack.enter_context(service)
        client = stack.enter_context(ServiceClient(url))
        health = client.health()
        if not health.get("workers", {}).get("recent"):
            warn(f"the service at {url} has seen no worker recently: the batch will wait until one starts")
        check_methods(client, experiment)
        dataset_info = check_dataset(client, experiment.dataset)
        body = experiment.batch_body(arch_ids, seed)
        apply_overrides(body, parse_overrides(overrides))
        if resume:
            batch_id = resume
            print(f"resuming batch {batch_id}", file=sys.stderr, flush=True)
        else:
            created = client.submit(body)
            batch_id = created["batch_id"]
            print(
                f"batch {batch_id}: {len(arch_ids)} architectures x {len(body['methods'])} methods, "
                f"{created['evaluations']['new']} new and "
                f"{created['evaluations']['reused']} reused evaluations",
                file=sys.stderr,
                flush=True,
            )
        run: dict[str, Any] = {
            "experiment": experiment.name,
            "batch_id": batch_id,
            "service": url,
            "embedded": embedded,
            "dataset": experiment.dataset,
            "seed": seed,
            "n_archs": len(arch_ids),
            "nb201_indices": arch_ids,
            "request": body,
            "machine": machine_description(),
            "torch_threads": torch_threads or experiment.torch_threads,
            "workers": (workers or experiment.workers) if embedded else None,
        }
        if ground_truth is not None:
            sent = upload_ground_truth(client, batch_id, ground_truth, arch_ids)
            run["published_ground_truth"] = {
                "name": ground_truth.name,
                "file": str(ground_truth.path),
                "key": ground_truth.key,
                "column": ground_truth.column,
                "n_uploaded": sent,
            }
        (out_dir / "run.json").write_text(json.dumps(run, indent=2))
        batch_start = time.monotonic()
        status = client.wait(batch_id, timeout_s=timeout_s, progress=True)
        run["batch_wall_s"] = time.monotonic() - batch_start
        run["counts"] = {k: v for k, v in status["counts"].items() if v}
        main_truth = f"method:{GROUND_TRUTH_ALIAS}" if experiment.include_full else ground_truth.name  # type: ignore[union-attr]
        report, export = fetch_outputs(client, batch_id, out_dir, main_truth)
        published = None
        if ground_truth is not None:
            published = (ground_truth, fetch_published(client, batch_id, out_dir, ground_truth))
        funnel_report = fetch_funnel(client, batch_id, out_dir, main_truth) if experiment.funnel else None
        run["batch_service_wall_s"] = service_wall_s(status, export["rows"])
    run["total_wall_s"] = time.monotonic() - started
    run["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text, verdict = build_summary(
        experiment, run, report, export, int(dataset_info["num_classes"]), published, funnel_report
    )
    (out_dir / "summary.md").write_text(text)
    run["ground_truth_sanity"] = verdict["sanity"]
    (out_dir / "run.json").write_text(json.dumps(run, indent=2))
    if not verdict["sanity"]["ok"]:
        warn(
            "the ground truth cannot rank anything, so no correlation of this run means anything:\n  - "
            + "\n  - ".join(verdict["sanity"]["problems"])
        )
    failed = {k: v for k, v in run["counts"].items() if k in ("failed", "lost")}
    if failed:
        warn(f"some evaluations did not finish: {failed}; see the 'Failed evaluations' section of summary.md")
    print(
        f"done in {format_duration(run['total_wall_s'])} (batch {format_duration(run['batch_wall_s'])}); "
        f"results in {out_dir}",
        file=sys.stderr,
        flush=True,
    )
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment through the service")
    run.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS))
    run.add_argument("--url", default=None, help="a running service; default: start an embedded one")
    run.add_argument("--n-archs", type=int, default=None, help="architectures (default: the experiment's)")
    run.add_argument(
        "--out", type=Path, default=None, help="results folder (default bench/results/<experiment>)"
    )
    run.add_argument("--datasets-dir", type=Path, default=None, help="dataset files for the embedded service")
    run.add_argument(
        "--data-dir", type=Path, default=None, help="embedded service data (default <out>/service-data)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the architecture draw and of the batch")
    run.add_argument("--timeout-s", type=float, default=None, help="give up waiting after this long")
    run.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads per embedded worker (default: the experiment's, else torch's own)",
    )
    run.add_argument(
        "--workers", type=int, default=None, help="embedded worker processes (default: the experiment's)"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ALIAS.KEY=VALUE",
        help="override a method entry's config, e.g. --set full.epochs=30 --set fear.threshold=0.5",
    )
    run.add_argument("--resume", default=None, metavar="BATCH_ID", help="wait for an existing batch instead")
    run.add_argument(
        "--ground-truth-file",
        type=Path,
        default=None,
        help="CSV of published accuracies (percent) to report every method against, beside full",
    )
    run.add_argument(
        "--ground-truth-key", default="nb201_index", choices=GROUND_TRUTH_KEYS, help="the file's key column"
    )
    run.add_argument("--ground-truth-column", default=None, help="the file's accuracy column")
    run.add_argument("--ground-truth-name", default="published", help="ground-truth set name in the service")
    sub.add_parser("list", help="describe the experiments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The client reports progress through logging when stderr is not a terminal.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.command == "list":
        for experiment in EXPERIMENTS.values():
            print(experiment.describe())
        return 0
    experiment = get_experiment(args.experiment)
    if not experiment.runs_here:
        warn(f"{experiment.name} is sized for {experiment.target}, not for this machine")
    datasets_dir = args.datasets_dir
    if datasets_dir is None and os.environ.get("FASTARCHRANK_DATASETS_DIR"):
        datasets_dir = Path(os.environ["FASTARCHRANK_DATASETS_DIR"])
    try:
        ground_truth = None
        if args.ground_truth_file is not None:
            if not args.ground_truth_column:
                raise ValueError("--ground-truth-file needs --ground-truth-column (the accuracy column)")
            ground_truth = load_ground_truth_file(
                args.ground_truth_file,
                args.ground_truth_key,
                args.ground_truth_column,
                args.ground_truth_name,
            )
        run_experiment(
            experiment,
            url=args.url,
            out_dir=args.out or default_out_dir(experiment),
            n_archs=args.n_archs,
            seed=args.seed,
            datasets_dir=datasets_dir,
            data_dir=args.data_dir,
            timeout_s=args.timeout_s,
            resume=args.resume,
            torch_threads=args.torch_threads,
            workers=args.workers,
            overrides=args.set,
            ground_truth=ground_truth,
        )
    except (ServiceError, FastArchRankError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
