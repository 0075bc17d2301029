"""Ground-truth accuracies from a CSV file, as items for ``Batch.put_ground_truth``.

The file names each architecture by an ``nb201_index`` column (preferred when present), an ``index``
column (the batch space's benchmark index) or a ``genotype`` column, and holds the accuracy in
percent in a value column. Without a named value column the one remaining column is used.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

ID_COLUMNS = ("nb201_index", "index", "genotype")


class GroundTruthCsvError(ValueError):
    pass


def read_csv(path: Path | str, value_column: str | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise GroundTruthCsvError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        id_column = next((c for c in ID_COLUMNS if c in columns), None)
        if id_column is None:
            raise GroundTruthCsvError(
                f"{path}: no architecture column; give one of {', '.join(ID_COLUMNS)} (columns: {columns})"
            )
        if value_column is None:
            rest = [c for c in columns if c not in ID_COLUMNS]
            if len(rest) != 1:
                raise GroundTruthCsvError(f"{path}: name the value column; candidates: {rest}")
            value_column = rest[0]
        if value_column not in columns:
            raise GroundTruthCsvError(f"{path}: no column {value_column!r} (columns: {columns})")
        items: list[dict[str, Any]] = []
        for line, row in enumerate(reader, start=2):
            ident = (row.get(id_column) or "").strip()
            raw = (row.get(value_column) or "").strip()
            if not ident:
                raise GroundTruthCsvError(f"{path}:{line}: empty {id_column}")
            try:
                value = float(raw)
            except ValueError:
                raise GroundTruthCsvError(f"{path}:{line}: {value_column} {raw!r} is not a number") from None
            if not math.isfinite(value):
                raise GroundTruthCsvError(f"{path}:{line}: {value_column} must be a finite number")
            if id_column == "genotype":
                items.append({"genotype": ident, "value": value})
            else:
                try:
                    items.append({id_column: int(ident), "value": value})
                except ValueError:
                    raise GroundTruthCsvError(
                        f"{path}:{line}: {id_column} {ident!r} is not an integer"
                    ) from None
    if not items:
        raise GroundTruthCsvError(f"{path}: no rows")
    return items
