"""
The README stays true: every command has help with an example and is documented, the CLI reference and the
upload diagram are current, the make targets are shown, and the Python examples run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import click
import pytest

from failover.cli.reference import iter_commands, render_reference, update_readme

REPOSITORY = Path(__file__).resolve().parent.parent
README = (REPOSITORY / "README.md").read_text(encoding="utf-8")
COMMANDS = dict(iter_commands())


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_with_an_example(name: str) -> None:
    """The example is a real invocation of this very command."""
    help_text = COMMANDS[name].get_help()
    assert "Example:" in help_text
    example = help_text.split("Example:", 1)[1]
    assert f"\n      {name}" in example, f"the example of {name!r} does not run it"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_documented_in_the_readme(name: str) -> None:
    assert f"### `{name}`" in README


def test_every_subcommand_is_reached() -> None:
    """The reference walks groups, so a command added to a group is documented without listing it here."""
    groups = [ctx.command for ctx in COMMANDS.values() if isinstance(ctx.command, click.Group)]
    expected = {
        f"{ctx.command_path} {sub}"
        for ctx in COMMANDS.values()
        for sub in getattr(ctx.command, "commands", {})
    }
    assert len(groups) == 2
    assert expected <= set(COMMANDS)


def test_the_cli_reference_is_current() -> None:
    """Regenerate both with ``python -m failover.cli.reference README.md``."""
    diagram = (REPOSITORY / "diagrams" / "upload.mmd").read_text(encoding="utf-8")
    assert update_readme(README, diagram) == README
    assert render_reference() in README


def test_the_readme_embeds_the_committed_upload_diagram() -> None:
    """The README's Mermaid block is ``diagrams/upload.mmd``, which test_diagrams keeps current."""
    (block,) = _blocks("mermaid")
    assert block == (REPOSITORY / "diagrams" / "upload.mmd").read_text(encoding="utf-8")


@pytest.mark.parametrize("target", ["make demo", "make test"])
def test_the_quick_start_shows_the_make_targets(target: str) -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert target in quick_start
    makefile = (REPOSITORY / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{target.split()[1]}:", makefile, re.MULTILINE)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_the_python_examples_run(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block runs as written in a fresh workspace, with a job's ``out.root`` and ``hits.root``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAILOVER_HOME", str(tmp_path / "ws"))
    # A block's own tempfile.mkdtemp() lands here too, and goes with the test's directory.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "out.root").write_bytes(b"event data\n" * 100)
    (tmp_path / "hits.root").write_bytes(b"hits\n" * 100)
    exec(compile(_blocks("python")[index], f"README.md python block {index}", "exec"), {})
