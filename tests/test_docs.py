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


def test_api_conventions_name_every_operation_and_error_code() -> None:
    from app.errors import CODES
    from app.main import create_app

    api_doc = (REPO_ROOT / "docs" / "api.md").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    operations = [
        op["operationId"] for ops in create_app().openapi()["paths"].values() for op in ops.values()
    ]
    assert len(operations) >= 20
    missing = [name for name in operations if f"`{name}`" not in api_doc]
    assert not missing, f"docs/api.md does not list the operations {missing}"
    for status, code in CODES.items():
        assert f"| {status} | `{code}` |" in api_doc, f"docs/api.md's error table lacks {status} {code}"
        assert f"`{code}` {status}" in readme, f"README's error codes lack {code} {status}"


def test_readme_command_table_names_every_flag() -> None:
    import argparse

    from app.cli import build_parser

    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Command line") : readme.index("## Tests")]
    rows = {
        line.split("`")[1].split()[1]: line
        for line in table.splitlines()
        if line.startswith("| `fastarchrank")
    }
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("serve", "worker"):
        flags = [
            flag
            for action in subparsers.choices[command]._actions
            for flag in action.option_strings
            if flag.startswith("--") and flag != "--help"
        ]
        assert flags, command
        undocumented = [flag for flag in flags if flag not in rows[command]]
        assert not undocumented, f"README's `fastarchrank {command}` row lacks {undocumented}"
