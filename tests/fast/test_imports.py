"""The import contracts of pyproject.toml ([tool.importlinter]): nothing imports the CLI's command
module, the command groups import only the CLI plumbing (cli_app) and not one another, and
retrieval never imports the application. A new import that closes a circle through the CLI
breaks the first two. import-linter runs in its own process: it reads the source files, not the
test process's modules, and prints through its own console."""

from __future__ import annotations

import subprocess
import sys

from agent.settings import REPO_ROOT

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"


def test_import_contracts_are_kept():
    run = subprocess.run([sys.executable, "-c", LINT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout
