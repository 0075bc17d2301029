"""DARTS / NB301 genotypes: safe repr and JSON parsing, validation, canonical form and key."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.genotypes import GenotypeError, darts, get_space

V2_NORMAL = [
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
]
V2_REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
]
V2_REPR = (
    f"Genotype(normal={V2_NORMAL!r}, normal_concat=[2, 3, 4, 5], "
    f"reduce={V2_REDUCE!r}, reduce_concat=range(2, 6))"
)


def v2_obj(**changes: object) -> dict:
    obj = {
        "normal": [list(p) for p in V2_NORMAL],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [list(p) for p in V2_REDUCE],
        "reduce_concat": [2, 3, 4, 5],
    }
    obj.update(changes)
    return obj


def as_repr(obj: dict) -> str:
    """The repr DARTS would print for ``obj`` (pairs as tuples)."""

    def pairs(value: object) -> object:
        return [tuple(p) for p in value] if isinstance(value, list) else value

    return (
        f"Genotype(normal={pairs(obj['normal'])!r}, normal_concat={obj['normal_concat']!r}, "
        f"reduce={pairs(obj['reduce'])!r}, reduce_concat={obj['reduce_concat']!r})"
    )


def test_v2_repr_matches_the_example_and_canonicalises() -> None:
    arch = darts.DARTS.parse(V2_REPR)
    assert arch == darts.DARTS.parse(darts.EXAMPLE)
    canonical = json.loads(arch.canonical)
    # Pairs sorted by (input, op) within each node; node order kept.
    assert canonical["normal"][4:6] == [["skip_connect", 0], ["sep_conv_3x3", 1]]
    assert canonical["reduce"][2:4] == [["max_pool_3x3", 1], ["skip_connect", 2]]
    assert canonical["reduce_concat"] == [2, 3, 4, 5]
    assert " " not in arch.canonical
    assert arch.key == hashlib.sha256(arch.canonical.encode()).hexdigest()
    assert arch.index is None and arch.space == "darts"


def test_repr_json_object_and_json_text_share_the_key() -> None:
    key = darts.DARTS.parse(V2_REPR).key
    assert darts.DARTS.parse(v2_obj()).key == key
    assert darts.DARTS.parse(json.dumps(v2_obj(), indent=2)).key == key
    tuples = V2_REPR.replace("normal=[", "normal=(").replace("], normal_concat", "), normal_concat")
    assert darts.DARTS.parse(tuples).key == key
    assert darts.DARTS.parse(darts.DartsGenotype(**_canonical_fields(key)).to_repr()).key == key


def _canonical_fields(key: str) -> dict:
    genotype = darts.parse_genotype(V2_REPR)
    assert darts.genotype_key(genotype) == key
    return {
        "normal": genotype.normal,
        "normal_concat": genotype.normal_concat,
        "reduce": genotype.reduce,
        "reduce_concat": genotype.reduce_concat,
    }


def test_pair_order_and_concat_order_do_not_change_the_key() -> None:
    swapped = [list(p) for p in V2_NORMAL]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    swapped[6], swapped[7] = swapped[7], swapped[6]
    base = darts.DARTS.parse(v2_obj()).key
    assert darts.DARTS.parse(v2_obj(normal=swapped, reduce_concat=[5, 3, 2, 4])).key == base


def test_different_structure_changes_the_key() -> None:
    changed = [list(p) for p in V2_NORMAL]
    changed[7] = ["dil_conv_5x5", 2]
    base = darts.DARTS.parse(v2_obj()).key
    assert darts.DARTS.parse(v2_obj(normal=changed)).key != base
    assert darts.DARTS.parse(v2_obj(normal_concat=[2, 3, 5])).key != base
    # Two nodes that read only the cell inputs can trade places: an isomorphic cell, but a
    # different exact structure, so a different key (documented: the key is not an iso key).
    first = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["skip_connect", 0], ["dil_conv_3x3", 1]]
    rest = [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["sep_conv_5x5", 2], ["skip_connect", 3]]
    traded = first[2:] + first[:2]
    assert (
        darts.DARTS.parse(v2_obj(normal=first + rest)).key
        != darts.DARTS.parse(v2_obj(normal=traded + rest)).key
    )


def test_canonical_text_parses_to_itself_in_both_spaces() -> None:
    for space in (darts.DARTS, darts.NB301):
        arch = space.parse(V2_REPR)
        assert space.parse(arch.canonical) == arch


def test_darts_accepts_what_nb301_forbids() -> None:
    normal = [list(p) for p in V2_NORMAL]
    normal[0] = ["none", 1]  # also makes node 2 read input 1 twice
    obj = v2_obj(normal=normal, normal_concat=[2, 4])
    assert darts.DARTS.parse(obj).space == "darts"
    with pytest.raises(GenotypeError):
        darts.NB301.parse(obj)


def _edit(cell: str, position: int, pair: object) -> dict:
    pairs: list = [list(p) for p in (V2_NORMAL if cell == "normal" else V2_REDUCE)]
    pairs[position] = pair
    return v2_obj(**{cell: pairs})


INJECTION = "Genotype(normal=__import__('os').system('x'), normal_concat=[2], reduce=[], reduce_concat=[2])"
MALFORMED = [
    ("darts", "__import__('os').system('x')", "genotype", "got a call to \"__import__('os').system\""),
    ("darts", INJECTION, "normal", "only literal lists/tuples of strings and integers are allowed here"),
    ("darts", V2_REPR.replace("'dil_conv_3x3'", "open('/etc/passwd').read()"), "normal", 'a call to "open('),
    ("darts", V2_REPR.replace("[2, 3, 4, 5]", "os.environ"), "normal_concat", "got an attribute access"),
    ("darts", V2_REPR.replace("'dil_conv_3x3'", "(lambda: 'x')()"), "normal", "a call to"),
    ("darts", V2_REPR.replace("'dil_conv_3x3'", "x"), "normal", "got the name 'x'"),
    ("darts", V2_REPR.replace("range(2, 6)", "range(2, 10**9)"), "reduce_concat", "range must be written"),
    ("darts", V2_REPR.replace("range(2, 6)", "range(6)"), "reduce_concat", "range must be written"),
    ("darts", "Genotype(normal=[", "genotype", "not a valid Genotype("),
    ("darts", "Genotype([], [2], [], [2])", "genotype", "positional arguments are not accepted"),
    ("darts", "Genotype(**{'normal': []})", "genotype", "'**' arguments are not accepted"),
    ("darts", V2_REPR.replace("reduce_concat=", "concat="), "genotype", "unexpected argument 'concat'"),
    (
        "darts",
        as_repr(v2_obj()).replace("Genotype(", "genotypes.Genotype("),
        "genotype",
        "got a call to 'genotypes.Genotype'",
    ),
    ("darts", v2_obj(normal=[list(p) for p in V2_NORMAL[:7]]), "normal cell", "expected 8 (op, input) pairs"),
    ("darts", v2_obj(reduce=[list(p) for p in V2_REDUCE] * 2), "reduce cell", "got 16"),
    (
        "darts",
        v2_obj(normal="sep_conv_3x3"),
        "normal cell",
        "expected a list of 8 (op, input) pairs, got string",
    ),
    (
        "darts",
        _edit("normal", 0, ["conv9", 0]),
        "normal cell, node 2, edge 1",
        "unknown op 'conv9'; allowed: none",
    ),
    ("darts", _edit("normal", 3, ["nor_conv_3x3", 1]), "normal cell, node 3, edge 2", "not allowed in darts"),
    (
        "darts",
        _edit("reduce", 1, ["max_pool_3x3", 2]),
        "reduce cell, node 2, edge 2",
        "input 2 is not earlier",
    ),
    ("darts", _edit("reduce", 7, ["max_pool_3x3", 5]), "reduce cell, node 5, edge 2", "allowed: 0..4"),
    (
        "darts",
        _edit("normal", 2, ["sep_conv_3x3", -1]),
        "normal cell, node 3, edge 1",
        "input -1 is negative",
    ),
    (
        "darts",
        _edit("normal", 2, ["sep_conv_3x3", "0"]),
        "normal cell, node 3, edge 1",
        "'0' is not an integer",
    ),
    ("darts", _edit("normal", 2, ["sep_conv_3x3", True]), "normal cell, node 3, edge 1", "is not an integer"),
    ("darts", _edit("normal", 2, ["sep_conv_3x3", 1.0]), "normal cell, node 3, edge 1", "is not an integer"),
    (
        "darts",
        _edit("normal", 2, [0, "sep_conv_3x3"]),
        "normal cell, node 3, edge 1",
        "pairs are (op, input)",
    ),
    (
        "darts",
        _edit("normal", 2, ["sep_conv_3x3", 0, 1]),
        "normal cell, node 3, edge 1",
        "expected an (op, input)",
    ),
    ("darts", v2_obj(normal_concat=[2, 2, 3]), "normal_concat", "node 2 appears twice"),
    (
        "darts",
        v2_obj(normal_concat=[1, 2]),
        "normal_concat",
        "node 1 is out of range; allowed node numbers: 2, 3",
    ),
    ("darts", v2_obj(reduce_concat=[]), "reduce_concat", "empty concat"),
    ("darts", v2_obj(reduce_concat="2345"), "reduce_concat", "got string"),
    (
        "darts",
        {k: v for k, v in v2_obj().items() if k != "reduce_concat"},
        "genotype",
        "missing key 'reduce_concat'",
    ),
    ("darts", v2_obj(extra=1), "genotype", "unexpected key 'extra'"),
    ("darts", '{"normal": }', "genotype", "invalid JSON"),
    ("darts", "[1, 2]", "genotype", "got a List expression"),
    ("darts", [V2_NORMAL], "genotype", "got list"),
    ("darts", V2_REPR + " " * darts.MAX_LENGTH, "genotype", "the limit is 4000"),
    ("darts", "", "genotype", "empty genotype"),
    (
        "nb301",
        _edit("normal", 0, ["none", 0]),
        "normal cell, node 2, edge 1",
        "op 'none' is not allowed in nb301",
    ),
    ("nb301", _edit("normal", 1, ["sep_conv_3x3", 0]), "normal cell, node 2", "both edges read input 0"),
    ("nb301", v2_obj(normal_concat=[2, 3, 4]), "normal_concat", "nb301 requires the concat [2, 3, 4, 5]"),
]


@pytest.mark.parametrize(("space", "raw", "location", "fragment"), MALFORMED)
def test_malformed_genotypes_are_rejected(space: str, raw: object, location: str, fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        get_space(space).parse(raw)
    assert info.value.location == location
    assert fragment in info.value.message


def test_nothing_is_evaluated(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    payload = f"Genotype(normal=__import__('pathlib').Path({str(marker)!r}).touch(), normal_concat=[2])"
    with pytest.raises(GenotypeError):
        darts.DARTS.parse(payload)
    assert not marker.exists()


# --- property tests -----------------------------------------------------------------------------


@st.composite
def genotypes(draw: st.DrawFn, nb301: bool) -> dict:
    ops = darts.NB301_OPS if nb301 else darts.OPS
    obj: dict = {}
    for kind in darts.CELL_KINDS:
        pairs = []
        for node in darts.NODE_NUMBERS:
            if nb301:
                sources = draw(st.lists(st.integers(0, node - 1), min_size=2, max_size=2, unique=True))
            else:
                sources = [draw(st.integers(0, node - 1)), draw(st.integers(0, node - 1))]
            pairs += [[draw(st.sampled_from(ops)), source] for source in sources]
        obj[kind] = pairs
        if nb301:
            obj[f"{kind}_concat"] = draw(st.permutations(list(darts.NODE_NUMBERS)))
        else:
            obj[f"{kind}_concat"] = draw(
                st.lists(st.sampled_from(darts.NODE_NUMBERS), min_size=1, max_size=4, unique=True)
            )
    return obj


def _swap_within_nodes(obj: dict, flips: list[bool]) -> dict:
    out = dict(obj)
    for kind in darts.CELL_KINDS:
        pairs = list(obj[kind])
        for node, flip in enumerate(flips[:4] if kind == "normal" else flips[4:]):
            if flip:
                pairs[2 * node], pairs[2 * node + 1] = pairs[2 * node + 1], pairs[2 * node]
        out[kind] = pairs
    return out


@settings(max_examples=100, deadline=None)
@given(nb301=st.booleans(), data=st.data())
def test_property_every_spelling_gives_one_key(nb301: bool, data: st.DataObject) -> None:
    space = darts.NB301 if nb301 else darts.DARTS
    obj = data.draw(genotypes(nb301))
    arch = space.parse(obj)
    flips = data.draw(st.lists(st.booleans(), min_size=8, max_size=8))
    variant = _swap_within_nodes(obj, flips)
    assert space.parse(as_repr(variant)) == arch
    assert space.parse(json.dumps(variant)) == arch
    assert space.parse(arch.canonical) == arch
    genotype = space.parse_genotype(arch.canonical)
    assert space.parse(genotype.to_repr()) == arch
    for kind in darts.CELL_KINDS:
        pairs, concat = genotype.cell(kind)
        assert list(concat) == sorted(obj[f"{kind}_concat"])
        for node in range(4):
            a, b = pairs[2 * node], pairs[2 * node + 1]
            assert (a[1], a[0]) <= (b[1], b[0])
            assert sorted(map(tuple, obj[kind][2 * node : 2 * node + 2])) == sorted([a, b])
