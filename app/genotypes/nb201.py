"""NAS-Bench-201 / NATS-Bench topology space: parser, canonical form, benchmark index, iso classes.

A cell is held as a 6-tuple of op names in the string's edge order
0→1, 0→2, 1→2, 0→3, 1→3, 2→3 (``EDGES``). Torch-free.
"""

from __future__ import annotations

import functools
import random
from typing import Any

from app.genotypes._text import is_int, show, type_name
from app.genotypes.base import GenotypeError, ParsedArch

NAME = "nb201"
# The official op order: the index rule below depends on it.
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, node)
NUM_NODES = 3
INDEX_COUNT = len(OPS) ** len(EDGES)  # 15,625
MAX_LENGTH = 1_000
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"

_OP_POSITION = {op: i for i, op in enumerate(OPS)}
_SHUFFLE_SEED = 88
_ALLOWED_OPS = ", ".join(OPS)
# Ops of the other supported spaces: named specifically so a user sees "wrong space", not "typo".
_FOREIGN_OPS = frozenset(
    {
        "max_pool_3x3",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    }
)

CellOps = tuple[str, ...]


def _unknown_op_message(op: str) -> str:
    if op in _FOREIGN_OPS:
        return f"op {show(op)} is not in the nb201 space; allowed: {_ALLOWED_OPS}"
    return f"unknown op {show(op)}; allowed: {_ALLOWED_OPS}"


def _parse_source(text: str, node: int, where: str) -> int:
    if text.isascii() and text.isdigit():
        source = int(text)
    elif text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise GenotypeError(f"input {text} is negative; allowed: 0..{node - 1}", where)
    else:
        raise GenotypeError(f"input {show(text)} is not an integer; allowed: 0..{node - 1}", where)
    if source >= node:
        raise GenotypeError(f"input {source} is not earlier than node {node}; allowed: 0..{node - 1}", where)
    return source


def _parse_node(text: str, node: int) -> dict[int, str]:
    """One ``|op~j|op~j|`` group → {source: op}, in any edge order."""
    where = f"node {node}"
    body = text.strip()
    if len(body) < 2 or not body.startswith("|") or not body.endswith("|"):
        raise GenotypeError(f"expected the node written as |op~j|...|, got {show(body)}", where)
    by_source: dict[int, str] = {}
    first_edge: dict[int, int] = {}
    for edge, raw_token in enumerate(body[1:-1].split("|"), start=1):
        edge_where = f"node {node}, edge {edge}"
        token = raw_token.strip()
        if not token:
            raise GenotypeError("empty edge (two '|' with nothing between); expected op~j", edge_where)
        if token.count("~") != 1:
            raise GenotypeError(f"expected op~j, got {show(token)}", edge_where)
        op_text, source_text = (part.strip() for part in token.split("~"))
        if op_text not in _OP_POSITION:
            raise GenotypeError(_unknown_op_message(op_text), edge_where)
        source = _parse_source(source_text, node, edge_where)
        if source in by_source:
            raise GenotypeError(
                f"duplicate input {source} (edge {first_edge[source]} already reads it); "
                f"node {node} needs exactly one edge from each of nodes 0..{node - 1}",
                edge_where,
            )
        by_source[source] = op_text
        first_edge[source] = edge
    missing = [j for j in range(node) if j not in by_source]
    if missing:
        listed = ", ".join(str(j) for j in missing)
        raise GenotypeError(
            f"missing an edge from node {listed}; node {node} needs exactly {node} edge(s), "
            f"one from each of nodes 0..{node - 1}",
            where,
        )
    return by_source


def parse_ops(raw: Any) -> CellOps:
    """Validate an NB201 string and return its 6 ops in ``EDGES`` order.

    Harmless variation is accepted: edges in any order inside a node, whitespace around the
    string, nodes and tokens. Everything else raises ``GenotypeError`` naming node and edge.
    """
    if not isinstance(raw, str):
        raise GenotypeError(
            f"expected an NB201 string like {EXAMPLE!r}, got {type_name(raw)} "
            "(post an index as nb201_index instead)",
            "genotype",
        )
    if len(raw) > MAX_LENGTH:
        raise GenotypeError(f"string is {len(raw)} characters long; the limit is {MAX_LENGTH}", "genotype")
    text = raw.strip()
    if not text:
        raise GenotypeError("empty genotype", "genotype")
    node_texts = text.split("+")
    if len(node_texts) != NUM_NODES:
        raise GenotypeError(
            f"expected {NUM_NODES} nodes separated by '+', got {len(node_texts)}; format: {EXAMPLE}",
            "genotype",
        )
    nodes = [_parse_node(node_text, node) for node, node_text in enumerate(node_texts, start=1)]
    return tuple(nodes[node - 1][source] for source, node in EDGES)


def to_string(ops: CellOps) -> str:
    """Canonical string: nodes in order, each node's edges sorted by source."""
    by_node: list[list[str]] = [[] for _ in range(NUM_NODES)]
    for op, (source, node) in zip(ops, EDGES, strict=True):
        by_node[node - 1].append(f"{op}~{source}")
    return "+".join("|" + "|".join(edges) + "|" for edges in by_node)


def rank(ops: CellOps) -> int:
    """Base-5 number of the ops in string order (first edge most significant)."""
    value = 0
    for op in ops:
        value = value * len(OPS) + _OP_POSITION[op]
    return value


def ops_from_rank(value: int) -> CellOps:
    digits = []
    for _ in EDGES:
        value, digit = divmod(value, len(OPS))
        digits.append(OPS[digit])
    return tuple(reversed(digits))


@functools.cache
def _index_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(index → rank, rank → index), built once on first use.

    The benchmark numbered its archs by shuffling the ranks with ``random.seed(88)``; a private
    ``Random(88)`` reproduces that shuffle without touching the global generator.
    """
    order = list(range(INDEX_COUNT))
    random.Random(_SHUFFLE_SEED).shuffle(order)
    inverse = [0] * INDEX_COUNT
    for index, value in enumerate(order):
        inverse[value] = index
    return tuple(order), tuple(inverse)


def index_of(ops: CellOps) -> int:
    return _index_tables()[1][rank(ops)]


def ops_at(index: int) -> CellOps:
    return ops_from_rank(_index_tables()[0][index])


def iso_key(ops: CellOps) -> str:
    """The benchmark's uniqueness string (its ``to_unique_str(consider_zero=True)``).

    Per node, each edge becomes a term: ``#`` if the op is ``none`` or its source is exactly
    ``#``; the source's expression itself for ``skip_connect``; ``(source)@op`` otherwise. The
    node is the sorted terms joined by ``+``; the key is node 3's expression. Zero terms are
    kept (a node of two zero edges is ``#+#``, which does not count as zero downstream): that
    quirk is what yields the benchmark's 6,466 classes, so it is reproduced, not "fixed".
    """
    expressions = ["0"]
    for node in range(1, NUM_NODES + 1):
        terms = []
        for op, (source, target) in zip(ops, EDGES, strict=True):
            if target != node:
                continue
            if op == "none" or expressions[source] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(expressions[source])
            else:
                terms.append(f"({expressions[source]})@{op}")
        expressions.append("+".join(sorted(terms)))
    return expressions[NUM_NODES]


def is_degenerate(ops: CellOps) -> bool:
    """True when no path of non-``none`` edges joins node 0 to node 3 (output ignores input)."""
    reached = [True, False, False, False]
    for op, (source, node) in zip(ops, EDGES, strict=True):
        if op != "none" and reached[source]:
            reached[node] = True
    return not reached[NUM_NODES]


def _arch(ops: CellOps, index: int) -> ParsedArch:
    canonical = to_string(ops)
    return ParsedArch(
        space=NAME,
        canonical=canonical,
        key=canonical,
        index=index,
        iso_key=iso_key(ops),
        degenerate=is_degenerate(ops),
    )


def parse(raw: Any) -> ParsedArch:
    """Validate and canonicalise an NB201 string (integers go through ``from_index``)."""
    ops = parse_ops(raw)
    return _arch(ops, index_of(ops))


def from_index(index: Any) -> ParsedArch:
    """The architecture the benchmark numbers ``index`` (0..15624)."""
    if not is_int(index) or not 0 <= index < INDEX_COUNT:
        raise GenotypeError(
            f"expected an integer in 0..{INDEX_COUNT - 1}, got {show(index)}",
            "nb201_index",
        )
    return _arch(ops_at(index), index)


class NB201Space:
    """``SpaceDef`` for the topology space."""

    name = NAME
    description = (
        "NAS-Bench-201 / NATS-Bench topology space: a 4-node cell, 6 edges, 5 ops "
        f"({INDEX_COUNT:,} architectures), stacked in the benchmark's tiny network."
    )
    ops = OPS
    example = EXAMPLE
    has_index = True
    index_count: int | None = INDEX_COUNT

    def parse(self, raw: Any) -> ParsedArch:
        return parse(raw)

    def from_index(self, index: int) -> ParsedArch:
        return from_index(index)


SPACE = NB201Space()
