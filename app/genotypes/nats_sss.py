"""NATS-Bench size space: ``c0:c1:c2:c3:c4`` channel lists over a fixed cell. Torch-free."""

from __future__ import annotations

from typing import Any

from app.genotypes._text import is_int, show, type_name
from app.genotypes.base import GenotypeError, ParsedArch

NAME = "nats_sss"
CHANNEL_CHOICES: tuple[int, ...] = tuple(range(8, 65, 8))
NUM_LAYERS = 5
INDEX_COUNT = len(CHANNEL_CHOICES) ** NUM_LAYERS  # 32,768
MAX_LENGTH = 200
EXAMPLE = "16:32:32:64:64"
# Every network in the space uses this cell; only the channel counts vary.
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
OPS: tuple[str, ...] = ("skip_connect", "nor_conv_3x3")

_ALLOWED = ", ".join(str(c) for c in CHANNEL_CHOICES)

Channels = tuple[int, ...]


def parse_channels(raw: Any) -> Channels:
    """Validate ``c0:c1:c2:c3:c4`` (whitespace around values allowed) → 5 channel counts."""
    if not isinstance(raw, str):
        raise GenotypeError(
            f"expected a string like {EXAMPLE!r}, got {type_name(raw)}",
            "genotype",
        )
    if len(raw) > MAX_LENGTH:
        raise GenotypeError(f"string is {len(raw)} characters long; the limit is {MAX_LENGTH}", "genotype")
    parts = raw.strip().split(":")
    if len(parts) != NUM_LAYERS:
        raise GenotypeError(
            f"expected {NUM_LAYERS} channel counts separated by ':', got {len(parts)}; e.g. {EXAMPLE}",
            "genotype",
        )
    channels = []
    for position, part in enumerate(parts):
        text = part.strip()
        where = f"c{position}"
        if not (text.isascii() and text.isdigit()):
            raise GenotypeError(f"{show(text)} is not a channel count; allowed: {_ALLOWED}", where)
        value = int(text)
        if value not in CHANNEL_CHOICES:
            raise GenotypeError(f"{value} is not an allowed channel count; allowed: {_ALLOWED}", where)
        channels.append(value)
    return tuple(channels)


def to_string(channels: Channels) -> str:
    return ":".join(str(c) for c in channels)


def index_of(channels: Channels) -> int:
    """Σ (c_k/8 − 1)·8^(4−k): base-8 digits, c0 most significant."""
    value = 0
    for channel in channels:
        value = value * len(CHANNEL_CHOICES) + CHANNEL_CHOICES.index(channel)
    return value


def channels_at(index: int) -> Channels:
    digits = []
    for _ in range(NUM_LAYERS):
        index, digit = divmod(index, len(CHANNEL_CHOICES))
        digits.append(CHANNEL_CHOICES[digit])
    return tuple(reversed(digits))


def _arch(channels: Channels) -> ParsedArch:
    canonical = to_string(channels)
    return ParsedArch(space=NAME, canonical=canonical, key=canonical, index=index_of(channels))


def parse(raw: Any) -> ParsedArch:
    return _arch(parse_channels(raw))


def from_index(index: Any) -> ParsedArch:
    if not is_int(index) or not 0 <= index < INDEX_COUNT:
        raise GenotypeError(f"expected an integer in 0..{INDEX_COUNT - 1}, got {show(index)}", "index")
    return _arch(channels_at(index))


class NatsSizeSpace:
    """``SpaceDef`` for the size space."""

    name = NAME
    description = (
        "NATS-Bench size space: the fixed cell " + CELL + " in a 5-layer network whose channel "
        f"counts c0..c4 each take one of {_ALLOWED} ({INDEX_COUNT:,} architectures)."
    )
    ops = OPS
    channel_choices = CHANNEL_CHOICES
    example = EXAMPLE
    has_index = True
    index_count: int | None = INDEX_COUNT

    def parse(self, raw: Any) -> ParsedArch:
        return parse(raw)

    def from_index(self, index: int) -> ParsedArch:
        return from_index(index)


SPACE = NatsSizeSpace()
