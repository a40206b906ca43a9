"""The `aisle` typer app and the plumbing every command shares: global options into one `Settings`,
a bad input into one red line and exit code 2.

Command modules (cli.py, catalog_cli.py, agent/train/*, evals/*) import this module and never one
another, so the command line has no import circle (the import-linter contracts in pyproject.toml,
checked by tests/fast/test_imports.py). The command groups are named here as module paths and
imported only when their name is on the command line: `aisle search` never loads the evals, the
trainers or the session store.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from typer.core import TyperGroup

from agent.settings import Settings

# name -> "module:attribute" of a typer app; imported on first use of the group.
GROUPS = {
    "catalog": "agent.entrypoints.catalog_cli:catalog_app",
    "sessions": "agent.entrypoints.sessions_cli:sessions_app",
    "eval": "evals.cli:eval_app",
    "train": "agent.entrypoints.train_cli:train_app",
    "models": "agent.entrypoints.models_cli:models_app",
}


class LazyGroups(TyperGroup):
    """The top-level commands plus the GROUPS, each imported when it is asked for (help lists
    them all, so `aisle --help` imports every group)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in GROUPS if name not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str):  # -> a click command (typer vendors click)
        if cmd_name not in self.commands and cmd_name in GROUPS:
            module, _, attribute = GROUPS[cmd_name].partition(":")
            group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
            group.name = cmd_name
            self.add_command(group, cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="aisle",
    help="Conversational product recommender with grounded explanations.",
    cls=LazyGroups,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CatalogOpt = Annotated[Optional[str], typer.Option("--catalog", "-c", help="A registered catalog (aisle catalog list); default: AISLE_CATALOG or amazon-office-2014.")]


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data folder (env AISLE_DATA_DIR; default ../shared/data).")] = None,
    home: Annotated[Optional[Path], typer.Option("--home", help="Local state folder: index, models, sessions (env AISLE_HOME; default .aisle).")] = None,
    chroma_url: Annotated[Optional[str], typer.Option("--chroma-url", help="Use a Chroma server instead of the embedded store (env AISLE_CHROMA_URL).")] = None,
    llm: Annotated[Optional[str], typer.Option("--llm", help="LLM engine: auto | transformers | llamacpp | vllm | openai (env AISLE_LLM).")] = None,
    llm_model: Annotated[Optional[Path], typer.Option("--llm-model", help="Local HF model folder, .gguf, or an added model's name (aisle models list; env AISLE_LLM_MODEL).")] = None,
    llm_url: Annotated[Optional[str], typer.Option("--llm-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (env AISLE_LLM_URL).")] = None,
) -> None:
    overrides = {k: v for k, v in dict(data_dir=data_dir, home=home, chroma_url=chroma_url, llm=llm, llm_model=llm_model, llm_url=llm_url).items() if v is not None}
    try:
        ctx.obj = Settings(**overrides)
    except Exception as exc:  # pydantic ValidationError: say which setting is wrong
        fail(f"bad setting: {exc}")


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the global options made (a subcommand's context inherits them), or the
    environment's when a command is invoked without the app's callback."""
    obj = ctx.find_root().obj if ctx.obj is None else ctx.obj
    return obj if isinstance(obj, Settings) else Settings()


def fail(message: str, code: int = 2) -> NoReturn:
    """One red `error: ...` line on stderr and exit `code` (2: bad input or state the user can fix)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
