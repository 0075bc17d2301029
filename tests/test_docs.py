"""The README stays true: every setting is in the config table, every documented doc exists."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_readme_config_table_lists_every_setting() -> None:
    from app.settings import Settings

    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`FASTARCHRANK_{name.upper()}`" not in readme]
    assert not missing, f"README config table lacks {missing}"


def test_readme_links_resolve() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (REPO_ROOT / target).exists(), f"README links to missing {target}"


def test_cli_parser_has_documented_commands() -> None:
    from app.cli import build_parser

    parser = build_parser()
    for command in ("serve", "worker", "migrate", "report"):
        assert (
            parser.parse_known_args([command, "x"] if command == "report" else [command])[0].command
            == command
        )
    args = parser.parse_args(["ground-truth", "put", "b", "--set", "s", "--csv", "f.csv"])
    assert args.command == "ground-truth" and args.ground_truth_command == "put"
