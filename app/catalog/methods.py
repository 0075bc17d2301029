"""The method registry the API serves and validates against, and config resolution.

Resolution = preset (a function of space and dataset) deep-merged with the batch's overrides,
validated by the method's pydantic model, dumped with every default filled in. That dump is the
*effective config*: hashed for identity and stored with each evaluation so a result can be rerun.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from app.catalog.base import HASH_OMITS_DEFAULT, MethodInfo
from app.catalog.datasets import DATASETS
from app.errors import InputError


@lru_cache
def all_methods() -> dict[str, MethodInfo]:
    from app.catalog.training import METHODS
    from app.catalog.zero_cost import MEASURES

    return {**METHODS, **MEASURES}


@dataclass(frozen=True)
class ResolvedMethod:
    name: str
    preset: str | None
    config: dict[str, Any]
    config_hash: str
    family: str


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def check_data_sizes(dataset: str, config: dict[str, Any]) -> tuple[list[str | int], str] | None:
    """Subsets larger than the dataset's split are a 422 now, not a worker failure hours later."""
    data = config.get("data")
    if not isinstance(data, dict):
        return None
    facts = DATASETS.get(dataset)
    if facts is None:
        return None
    if facts.source == "generated":
        synthetic = data.get("synthetic") or {}
        classes = facts.num_classes
        train_n = classes * int(synthetic.get("train_per_class", 0))
        test_n = classes * (int(synthetic.get("per_class", 0)) - int(synthetic.get("train_per_class", 0)))
    else:
        train_n, test_n = facts.train_size, facts.test_size
    for split, available in (("train_size", train_n), ("test_size", test_n)):
        wanted = data.get(split)
        if wanted is not None and wanted > available:
            return (
                ["data", split],
                f"{split}={wanted} exceeds the {available} images of {dataset!r}'s "
                f"{split.removesuffix('_size')} split; use at most {available}",
            )
    return None


def hashed_form(config: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``config`` without the fields added after results were stored that are left at their
    default (``HASH_OMITS_DEFAULT``), at every nesting level: the form the identity hash reads."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        field = model.model_fields.get(key)
        if field is None:
            out[key] = value
            continue
        if (field.json_schema_extra or {}) == HASH_OMITS_DEFAULT and value == field.default:
            continue
        nested = field.annotation
        if isinstance(value, dict) and isinstance(nested, type) and issubclass(nested, BaseModel):
            out[key] = hashed_form(value, nested)
        else:
            out[key] = value
    return out


def config_hash(method: str, config: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    if model is not None:
        config = hashed_form(config, model)
    blob = json.dumps({"method": method, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def resolve(
    name: str,
    preset: str | None,
    overrides: dict[str, Any] | None,
    space: str,
    dataset: str,
    loc: list[str | int],
) -> ResolvedMethod:
    methods = all_methods()
    info = methods.get(name)
    if info is None:
        raise InputError([*loc, "name"], f"unknown method {name!r}; allowed: {', '.join(sorted(methods))}")
    if space not in info.spaces:
        raise InputError(
            [*loc, "name"],
            f"method {name!r} does not support space {space!r}; it supports {list(info.spaces)}",
        )
    preset = preset or info.default_preset
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in info.presets:
            raise InputError(
                [*loc, "preset"],
                f"unknown preset {preset!r} for method {name!r}; allowed: {', '.join(sorted(info.presets))}",
            )
        base = info.presets[preset](space, dataset)
    merged = deep_merge(base, overrides or {})
    try:
        model = info.config_model.model_validate(merged)
    except ValidationError as exc:
        raise InputError.many(
            [
                {
                    "loc": [*loc, "config", *err["loc"]],
                    "msg": f"{err['msg']} (input: {err.get('input')!r})",
                    "type": err["type"],
                }
                for err in exc.errors()
            ]
        ) from None
    config = model.model_dump(mode="json")
    problem = check_data_sizes(dataset, config)
    if problem is None and info.check is not None:
        problem = info.check(space, dataset, config)
    if problem is not None:
        where, msg = problem
        raise InputError([*loc, "config", *where], msg)
    return ResolvedMethod(name, preset, config, config_hash(name, config, type(model)), info.family)
