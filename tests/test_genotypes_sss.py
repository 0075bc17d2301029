"""NATS-Bench size-space genotypes: parsing, canonical form and index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.genotypes import GenotypeError, nats_sss


@pytest.mark.parametrize(
    ("text", "index"),
    [("8:8:8:8:8", 0), ("64:64:64:64:64", 32767), ("16:8:8:8:8", 4096), ("8:8:8:8:16", 1), ("8:8:8:16:8", 8)],
)
def test_index_anchors(text: str, index: int) -> None:
    arch = nats_sss.parse(text)
    assert arch.index == index
    assert arch.canonical == arch.key == text
    assert nats_sss.from_index(index) == arch


def test_every_index_round_trips() -> None:
    seen = set()
    for index in range(nats_sss.INDEX_COUNT):
        arch = nats_sss.from_index(index)
        channels = [int(c) for c in arch.canonical.split(":")]
        assert arch.index == sum((c // 8 - 1) * 8 ** (4 - k) for k, c in enumerate(channels))
        assert nats_sss.parse(arch.canonical) == arch
        seen.add(arch.key)
    assert len(seen) == nats_sss.INDEX_COUNT


def test_harmless_variation_is_canonicalised() -> None:
    assert nats_sss.parse("  16 : 32:08: 64:64\n").canonical == "16:32:8:64:64"


MALFORMED = [
    ("8:8:8:8", "genotype", "expected 5 channel counts separated by ':', got 4"),
    ("8:8:8:8:8:8", "genotype", "got 6"),
    ("8:8:8:8:9", "c4", "9 is not an allowed channel count; allowed: 8, 16, 24, 32, 40, 48, 56, 64"),
    ("8:8:72:8:8", "c2", "72 is not an allowed channel count"),
    ("0:8:8:8:8", "c0", "0 is not an allowed channel count"),
    ("8:8:8:8:-8", "c4", "'-8' is not a channel count"),
    ("8:8::8:8", "c2", "'' is not a channel count"),
    ("8:8:8:8:8.0", "c4", "'8.0' is not a channel count"),
    ("8,8,8,8,8", "genotype", "got 1"),
    ("8:" * 200 + "8", "genotype", "the limit is 200"),
    (8, "genotype", "got integer"),
    ([8, 8, 8, 8, 8], "genotype", "got list"),
]


@pytest.mark.parametrize(("raw", "location", "fragment"), MALFORMED)
def test_malformed_size_genotypes(raw: object, location: str, fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        nats_sss.parse(raw)
    assert info.value.location == location
    assert fragment in info.value.message


@pytest.mark.parametrize("bad", [-1, 32768, False, "0"])
def test_from_index_rejects_non_indices(bad: object) -> None:
    with pytest.raises(GenotypeError, match=r"0\.\.32767"):
        nats_sss.from_index(bad)  # type: ignore[arg-type]


@given(
    channels=st.lists(st.sampled_from(nats_sss.CHANNEL_CHOICES), min_size=5, max_size=5),
    pads=st.lists(st.sampled_from(["", " ", "\t"]), min_size=10, max_size=10),
)
def test_property_round_trip(channels: list[int], pads: list[str]) -> None:
    text = ":".join(pads[2 * k] + str(c) + pads[2 * k + 1] for k, c in enumerate(channels))
    arch = nats_sss.parse(text)
    assert arch.canonical == ":".join(map(str, channels))
    assert list(nats_sss.channels_at(arch.index)) == channels
