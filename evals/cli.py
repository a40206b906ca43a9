"""`aisle eval ...`: the evaluation commands, one module per eval, registered here."""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Measure ranking, conversation and copy quality; compare runs.", no_args_is_help=True)
