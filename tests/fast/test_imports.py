"""The import contracts of pyproject.toml ([tool.importlinter]): nothing imports the CLI's command
module, the command groups import only the CLI plumbing (cli_app) and not one another, and
retrieval never imports the application. A new import that closes a circle through the CLI
breaks the first two."""

from __future__ import annotations

from importlinter.cli import lint_imports

from agent.settings import REPO_ROOT


def test_import_contracts_are_kept(capsys):
    code = lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out
