"""`aisle train ...`: (re)build a catalog's models after new history or items arrive.

Each subcommand lives next to the code it drives; this module only collects them.
"""

from __future__ import annotations

import typer

train_app = typer.Typer(
    help="Train a catalog's models: recommenders and learned ranker (models), the LLM ranker adapter (ranker), the copywriter adapter (copywriter).",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    from agent.train.copywriter import register as register_copywriter
    from agent.train.models import register as register_models
    from agent.train.ranker import register as register_ranker

    register_models(train_app)
    register_ranker(train_app)
    register_copywriter(train_app)


_register()
