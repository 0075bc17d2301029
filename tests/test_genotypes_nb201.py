"""NB201 genotype parsing, canonical form, benchmark index, iso classes, and the space registry."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.genotypes import SPACES, GenotypeError, ParsedArch, get_space, nb201

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ANCHORS = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    1: "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    1462: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    1651: ALL_NONE,
    15624: "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|",
}
CHECKSUM = "83abc799e45cf34e9d2163654668ab998b9a54d01c39e72ca1f71f2cdf356d84"


def test_every_index_round_trips_through_parse_and_reordering() -> None:
    for index in range(nb201.INDEX_COUNT):
        arch = nb201.from_index(index)
        assert arch.index == index
        parsed = nb201.parse(arch.canonical)
        assert parsed == arch
        # The same cell with every node's edges reversed and padded must land on the same entry.
        reordered = "+".join(
            " |" + "|".join(reversed(node.strip("|").split("|"))) + "| " for node in arch.canonical.split("+")
        )
        assert nb201.parse(reordered) == arch


def test_index_order_matches_the_benchmark_checksum() -> None:
    text = "\n".join(nb201.from_index(i).canonical for i in range(nb201.INDEX_COUNT))
    assert hashlib.sha256(text.encode()).hexdigest() == CHECKSUM


@pytest.mark.parametrize(("index", "string"), sorted(ANCHORS.items()))
def test_anchor_indices(index: int, string: str) -> None:
    assert nb201.from_index(index).canonical == string
    assert nb201.parse(string).index == index


def test_rank_is_base5_in_string_order() -> None:
    ops = nb201.parse_ops(ANCHORS[0])
    # avg, 1x1, skip, 1x1, skip, skip → digits 4,2,1,2,1,1
    assert nb201.rank(ops) == int("421211", 5)
    assert nb201.ops_from_rank(nb201.rank(ops)) == ops


def test_iso_classes_and_degenerate_counts() -> None:
    archs = [nb201.from_index(i) for i in range(nb201.INDEX_COUNT)]
    assert len({arch.iso_key for arch in archs}) == 6466
    assert sum(arch.degenerate for arch in archs) == 341


def test_iso_key_ignores_dead_edges_but_not_live_ones() -> None:
    # Node 1 only feeds `none` edges, so its op cannot change the function.
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|"
    c = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|"
    assert nb201.parse(a).key != nb201.parse(b).key
    assert nb201.parse(a).iso_key == nb201.parse(b).iso_key
    assert nb201.parse(a).iso_key != nb201.parse(c).iso_key


def test_degenerate_flag() -> None:
    assert nb201.parse(ALL_NONE).degenerate
    # Input reaches node 1 but node 1 never reaches the output.
    assert nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|").degenerate
    assert not nb201.parse(ANCHORS[1462]).degenerate
    assert not nb201.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|").degenerate


def test_index_tables_leave_the_global_random_state_alone() -> None:
    nb201._index_tables.cache_clear()
    random.seed(5)
    expected = random.Random(5).random()
    nb201.from_index(3)
    assert random.random() == expected


def test_whitespace_and_edge_order_share_one_key() -> None:
    canonical = ANCHORS[1]
    variants = [
        f"  {canonical}\n",
        "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|nor_conv_3x3~1|skip_connect~0|",
        "| nor_conv_3x3 ~ 0 | + |avg_pool_3x3~1| nor_conv_3x3~0| + "
        "|skip_connect~2|skip_connect~0|nor_conv_3x3~1|",
    ]
    for variant in variants:
        arch = nb201.parse(variant)
        assert arch.canonical == canonical
        assert arch.key == canonical
        assert arch.index == 1


MALFORMED = [
    (
        "|conv9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "node 1, edge 1",
        "unknown op 'conv9'; allowed: " + ", ".join(nb201.OPS),
    ),
    (
        "|none~0|+|none~0|max_pool_3x3~1|+|none~0|none~1|none~2|",
        "node 2, edge 2",
        "op 'max_pool_3x3' is not in the nb201 space",
    ),
    ("|none~0|+|none~0|none~1|", "genotype", "expected 3 nodes separated by '+', got 2"),
    (ALL_NONE + "+|none~0|", "genotype", "expected 3 nodes separated by '+', got 4"),
    (
        "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",
        "node 2, edge 2",
        "duplicate input 0 (edge 1 already reads it)",
    ),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2", "missing an edge from node 1"),
    ("|none~0|+|none~0|none~1|+|none~0|none~2|", "node 3", "missing an edge from node 1"),
    (
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "node 1, edge 1",
        "input 1 is not earlier than node 1; allowed: 0..0",
    ),
    (
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~3|",
        "node 3, edge 3",
        "input 3 is not earlier than node 3; allowed: 0..2",
    ),
    ("|none~-1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "input -1 is negative"),
    ("|none~x|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "input 'x' is not an integer"),
    ("|none~\u0661|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "is not an integer"),
    ("|none~0||+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 2", "empty edge"),
    ("||+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "empty edge"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "expected op~j"),
    ("|none~0~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1, edge 1", "expected op~j"),
    ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1", "expected the node written as |op~j|...|"),
    ("", "genotype", "empty genotype"),
    ("|" * 2000, "genotype", "the limit is 1000"),
    ("__import__('os').system('x')", "genotype", "expected 3 nodes"),
    (1462, "genotype", "got integer (post an index as nb201_index instead)"),
    (None, "genotype", "got null"),
    ({"nb201_index": 3}, "genotype", "got object"),
]


@pytest.mark.parametrize(("raw", "location", "fragment"), MALFORMED)
def test_malformed_strings_are_rejected_with_their_place(raw: object, location: str, fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        nb201.parse(raw)
    assert info.value.location == location
    assert fragment in info.value.message


@pytest.mark.parametrize("bad", [-1, nb201.INDEX_COUNT, True, "3", 1.0, None])
def test_from_index_rejects_non_indices(bad: object) -> None:
    with pytest.raises(GenotypeError) as info:
        nb201.from_index(bad)  # type: ignore[arg-type]
    assert info.value.location == "nb201_index"
    assert "0..15624" in info.value.message


cells = st.tuples(*[st.sampled_from(nb201.OPS) for _ in nb201.EDGES])


@settings(max_examples=200, deadline=None)
@given(ops=cells, data=st.data())
def test_property_any_spelling_parses_to_the_canonical_cell(
    ops: tuple[str, ...], data: st.DataObject
) -> None:
    pad = st.sampled_from(["", " ", "\t", "  "])
    nodes = []
    for node in range(1, 4):
        edges = [
            f"{op}~{source}" for op, (source, target) in zip(ops, nb201.EDGES, strict=True) if target == node
        ]
        edges = data.draw(st.permutations(edges))
        nodes.append(data.draw(pad) + "|" + "|".join(edges) + "|" + data.draw(pad))
    arch = nb201.parse(data.draw(pad) + "+".join(nodes) + data.draw(pad))
    assert arch.canonical == nb201.to_string(ops)
    assert nb201.parse_ops(arch.canonical) == ops
    assert nb201.ops_at(arch.index) == ops
    assert nb201.from_index(arch.index) == arch


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_the_four_spaces_with_their_protocol() -> None:
    assert set(SPACES) == {"nb201", "nats_sss", "darts", "nb301"}
    for name, space in SPACES.items():
        assert get_space(name) is space
        assert space.name == name
        assert space.description and space.ops
        parsed = space.parse(space.example)
        assert isinstance(parsed, ParsedArch) and parsed.space == name
        assert space.parse(parsed.canonical) == parsed
        if space.has_index:
            assert space.from_index(parsed.index) == parsed
            assert space.index_count and parsed.index < space.index_count
        else:
            assert space.index_count is None
            with pytest.raises(GenotypeError):
                space.from_index(0)


def test_unknown_space_names_the_allowed_ones() -> None:
    with pytest.raises(GenotypeError) as info:
        get_space("nb101")
    assert info.value.location == "space"
    assert "nb201, nats_sss, darts, nb301" in info.value.message


def test_genotype_package_does_not_import_torch() -> None:
    code = "import sys, app.genotypes; sys.exit(1 if 'torch' in sys.modules else 0)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
