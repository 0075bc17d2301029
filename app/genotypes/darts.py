"""DARTS and NAS-Bench-301 genotypes: safe parsing, validation, canonical form and key. Torch-free.

Accepted input: the Python repr DARTS prints, e.g.
``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...],
reduce_concat=[2, 3, 4, 5])``,
a JSON object with the same four keys (pairs as 2-item lists), or that object as JSON text.
The repr is untrusted input: it is read with ``ast`` and only literal lists/tuples of
(string, integer) pairs and ``range(a, b)`` for the concat lists are accepted; nothing is evaluated.

Nodes are numbered by the state they produce: states 0 and 1 are the cell's inputs, the four
intermediate nodes are nodes 2..5, so node n may read any state 0..n-1.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from typing import Any, cast

from app.genotypes._text import is_int, show, type_name
from app.genotypes.base import GenotypeError, ParsedArch

OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NB301_OPS: tuple[str, ...] = tuple(op for op in OPS if op != "none")
CELL_KINDS: tuple[str, ...] = ("normal", "reduce")
KEYS: tuple[str, ...] = ("normal", "normal_concat", "reduce", "reduce_concat")
NUM_INPUTS = 2  # states 0 and 1
NUM_NODES = 4
EDGES_PER_NODE = 2
NODE_NUMBERS: tuple[int, ...] = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_NODES))  # 2..5
MAX_LENGTH = 4_000
_MAX_LITERAL_ITEMS = 64  # far above any valid genotype; bounds work on hostile input

EXAMPLE = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)  # DARTS_V2 from the DARTS paper

# Ops of the topology space, named so a user sees "wrong space" rather than "typo".
_NB201_ONLY_OPS = frozenset({"nor_conv_1x1", "nor_conv_3x3"})
_SHAPE = "Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])"

Pair = tuple[str, int]


@dataclass(frozen=True)
class DartsGenotype:
    """A validated genotype in canonical order (each node's pairs sorted by (input, op))."""

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def cell(self, kind: str) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
        """(pairs, concat) of the ``"normal"`` or ``"reduce"`` cell."""
        if kind == "normal":
            return self.normal, self.normal_concat
        if kind == "reduce":
            return self.reduce, self.reduce_concat
        raise ValueError(f"cell kind must be 'normal' or 'reduce', got {kind!r}")

    def to_json_obj(self) -> dict[str, list]:
        return {
            "normal": [[op, source] for op, source in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, source] for op, source in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_canonical(self) -> str:
        """Compact JSON with the keys in a fixed order: the stored form and the key's input."""
        return json.dumps(self.to_json_obj(), separators=(",", ":"))

    def to_repr(self) -> str:
        """The DARTS-style repr, for people and for code that expects it."""

        def pairs(items: tuple[Pair, ...]) -> str:
            return "[" + ", ".join(f"({op!r}, {source})" for op, source in items) + "]"

        return (
            f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )


# --- reading the repr with ast ------------------------------------------------------------------


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return f"a call to {show(ast.unparse(node.func))}"
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return "an attribute access"
    return f"a {type(node).__name__} expression"


def _literal(node: ast.AST, where: str, allow_range: bool) -> Any:
    """Convert a literal subtree to Python values; anything that is not plain data is rejected."""
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, str | int | float | bool):
            return node.value
        raise GenotypeError(f"unexpected constant {show(node.value)}", where)
    if isinstance(node, ast.List | ast.Tuple):
        if len(node.elts) > _MAX_LITERAL_ITEMS:
            raise GenotypeError(f"too many items ({len(node.elts)})", where)
        return [_literal(item, where, allow_range=False) for item in node.elts]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and is_int(node.operand.value)
    ):
        # Kept as a number so validation can say "negative" instead of "not a literal".
        return -cast(int, node.operand.value)
    if (
        allow_range
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
    ):
        return _range_literal(node, where)
    allowed = "literal lists/tuples of strings and integers"
    if allow_range:
        allowed += " or range(a, b)"
    raise GenotypeError(f"only {allowed} are allowed here; got {_describe(node)}", where)


def _range_literal(node: ast.Call, where: str) -> list[int]:
    if node.keywords or len(node.args) != 2:
        raise GenotypeError("range must be written range(a, b) with two integers", where)
    bounds = []
    for arg in node.args:
        if not isinstance(arg, ast.Constant | ast.UnaryOp):
            raise GenotypeError(
                f"range must be written range(a, b) with two integers; got {_describe(arg)}", where
            )
        bounds.append(_literal(arg, where, allow_range=False))
    start, stop = bounds
    if not (is_int(start) and is_int(stop)):
        raise GenotypeError("range must be written range(a, b) with two integers", where)
    if stop - start > _MAX_LITERAL_ITEMS:
        raise GenotypeError(f"range({start}, {stop}) is too long", where)
    return list(range(start, stop))


def _object_from_repr(text: str) -> dict[str, Any]:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        raise GenotypeError(f"not a valid {_SHAPE} expression ({reason})", "genotype") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise GenotypeError(
            f"expected {_SHAPE} or a JSON object with those keys; got {_describe(call)}", "genotype"
        )
    if call.args:
        raise GenotypeError(
            "positional arguments are not accepted; name them: normal=, normal_concat=, reduce=, "
            "reduce_concat=",
            "genotype",
        )
    obj: dict[str, Any] = {}
    for keyword in call.keywords:
        name = keyword.arg
        if name is None:
            raise GenotypeError("'**' arguments are not accepted", "genotype")
        if name not in KEYS:
            raise GenotypeError(f"unexpected argument {show(name)}; allowed: {', '.join(KEYS)}", "genotype")
        if name in obj:
            raise GenotypeError(f"argument {name!r} given twice", "genotype")
        obj[name] = _literal(keyword.value, name, allow_range=name.endswith("_concat"))
    return obj


# --- validation -------------------------------------------------------------------------------


def _op_error(op: str, nb301: bool) -> str:
    space = "nb301" if nb301 else "darts"
    allowed = ", ".join(NB301_OPS if nb301 else OPS)
    if op in OPS or op in _NB201_ONLY_OPS:
        return f"op {show(op)} is not allowed in {space}; allowed: {allowed}"
    return f"unknown op {show(op)}; allowed: {allowed}"


def _validate_pair(item: Any, node: int, where: str, nb301: bool) -> Pair:
    if not isinstance(item, list | tuple) or len(item) != 2:
        raise GenotypeError(f"expected an (op, input) pair, got {show(item)}", where)
    op, source = item
    allowed_ops = NB301_OPS if nb301 else OPS
    if not isinstance(op, str):
        raise GenotypeError(
            f"op must be a string, got {type_name(op)} {show(op)} (pairs are (op, input)); "
            f"allowed: {', '.join(allowed_ops)}",
            where,
        )
    if op not in allowed_ops:
        raise GenotypeError(_op_error(op, nb301), where)
    if not is_int(source):
        raise GenotypeError(f"input {show(source)} is not an integer; allowed: 0..{node - 1}", where)
    if source < 0:
        raise GenotypeError(f"input {source} is negative; allowed: 0..{node - 1}", where)
    if source >= node:
        raise GenotypeError(f"input {source} is not earlier than node {node}; allowed: 0..{node - 1}", where)
    return op, source


def _validate_cell(value: Any, kind: str, nb301: bool) -> tuple[Pair, ...]:
    where = f"{kind} cell"
    expected = NUM_NODES * EDGES_PER_NODE
    if not isinstance(value, list | tuple):
        raise GenotypeError(f"expected a list of {expected} (op, input) pairs, got {type_name(value)}", where)
    if len(value) != expected:
        raise GenotypeError(
            f"expected {expected} (op, input) pairs ({EDGES_PER_NODE} per node × {NUM_NODES} nodes), "
            f"got {len(value)}",
            where,
        )
    canonical: list[Pair] = []
    for position, node in enumerate(NODE_NUMBERS):
        items = value[position * EDGES_PER_NODE : (position + 1) * EDGES_PER_NODE]
        pairs = [
            _validate_pair(item, node, f"{kind} cell, node {node}, edge {edge}", nb301)
            for edge, item in enumerate(items, start=1)
        ]
        if nb301 and pairs[0][1] == pairs[1][1]:
            raise GenotypeError(
                f"both edges read input {pairs[0][1]}; nb301 requires two distinct inputs per node",
                f"{kind} cell, node {node}",
            )
        canonical.extend(sorted(pairs, key=lambda pair: (pair[1], pair[0])))
    return tuple(canonical)


def _validate_concat(value: Any, where: str, nb301: bool) -> tuple[int, ...]:
    allowed = ", ".join(str(n) for n in NODE_NUMBERS)
    if not isinstance(value, list | tuple):
        raise GenotypeError(f"expected a list of node numbers ({allowed}), got {type_name(value)}", where)
    if not value:
        raise GenotypeError(f"empty concat; allowed node numbers: {allowed}", where)
    seen: set[int] = set()
    for item in value:
        if not is_int(item):
            raise GenotypeError(f"{show(item)} is not an integer; allowed node numbers: {allowed}", where)
        if item not in NODE_NUMBERS:
            raise GenotypeError(f"node {item} is out of range; allowed node numbers: {allowed}", where)
        if item in seen:
            raise GenotypeError(f"node {item} appears twice", where)
        seen.add(item)
    concat = tuple(sorted(seen))
    if nb301 and concat != NODE_NUMBERS:
        raise GenotypeError(f"nb301 requires the concat [{allowed}], got {list(value)}", where)
    return concat


def validate(obj: Any, nb301: bool = False) -> DartsGenotype:
    """Validate a plain-data genotype (dict with the four keys) and canonicalise it."""
    if not isinstance(obj, dict):
        raise GenotypeError(f"expected {_SHAPE} or a JSON object, got {type_name(obj)}", "genotype")
    for key in obj:
        if key not in KEYS:
            raise GenotypeError(f"unexpected key {show(key)}; allowed: {', '.join(KEYS)}", "genotype")
    for key in KEYS:
        if key not in obj:
            raise GenotypeError(f"missing key {key!r}; a genotype needs {', '.join(KEYS)}", "genotype")
    return DartsGenotype(
        normal=_validate_cell(obj["normal"], "normal", nb301),
        normal_concat=_validate_concat(obj["normal_concat"], "normal_concat", nb301),
        reduce=_validate_cell(obj["reduce"], "reduce", nb301),
        reduce_concat=_validate_concat(obj["reduce_concat"], "reduce_concat", nb301),
    )


def parse_genotype(raw: Any, nb301: bool = False) -> DartsGenotype:
    """Repr string, JSON text or dict → validated, canonical ``DartsGenotype``."""
    if isinstance(raw, dict):
        return validate(raw, nb301)
    if not isinstance(raw, str):
        raise GenotypeError(f"expected {_SHAPE} or a JSON object, got {type_name(raw)}", "genotype")
    if len(raw) > MAX_LENGTH:
        raise GenotypeError(f"genotype is {len(raw)} characters long; the limit is {MAX_LENGTH}", "genotype")
    text = raw.strip()
    if not text:
        raise GenotypeError("empty genotype", "genotype")
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise GenotypeError(f"invalid JSON: {exc}", "genotype") from None
        return validate(obj, nb301)
    return validate(_object_from_repr(text), nb301)


def genotype_key(genotype: DartsGenotype) -> str:
    """sha256 of the canonical JSON: equal for equal structure up to pair order and concat order.

    It does not merge every isomorphic cell (e.g. nodes listed in another order), by design.
    """
    return hashlib.sha256(genotype.to_canonical().encode("utf-8")).hexdigest()


class DartsSpace:
    """``SpaceDef`` for ``darts`` (all 8 ops) and ``nb301`` (no ``none``, distinct inputs, fixed concat)."""

    ops: tuple[str, ...]
    example = EXAMPLE
    has_index = False
    index_count: int | None = None

    def __init__(self, name: str, nb301: bool) -> None:
        self.name = name
        self.nb301 = nb301
        self.ops = NB301_OPS if nb301 else OPS
        if nb301:
            self.description = (
                "NAS-Bench-301 (DARTS cells): no 'none' op, two distinct inputs per node, "
                "concat [2, 3, 4, 5]; NetworkCIFAR, default C=32 with 8 cells."
            )
        else:
            self.description = (
                "DARTS cell space: normal and reduction cells of 4 nodes with 2 (op, input) pairs "
                "each; NetworkCIFAR, default C=32 with 8 cells."
            )

    def parse_genotype(self, raw: Any) -> DartsGenotype:
        return parse_genotype(raw, self.nb301)

    def parse(self, raw: Any) -> ParsedArch:
        genotype = parse_genotype(raw, self.nb301)
        return ParsedArch(space=self.name, canonical=genotype.to_canonical(), key=genotype_key(genotype))

    def from_index(self, index: int) -> ParsedArch:
        raise GenotypeError(f"the {self.name} space has no index; post a genotype instead", "index")


DARTS = DartsSpace("darts", nb301=False)
NB301 = DartsSpace("nb301", nb301=True)
