"""`aisle eval ...`: the evaluation commands, one module per eval, registered here."""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Measure ranking, conversation and copy quality; compare runs.", no_args_is_help=True)

# --- issue #7: prompt evals (ranking, conversation, compare) ---------------------------------------
from evals.compare import compare_command  # noqa: E402
from evals.conversation import conversation_command  # noqa: E402
from evals.ranking import ranking_command  # noqa: E402

eval_app.command("ranking")(ranking_command)
eval_app.command("conversation")(conversation_command)
eval_app.command("compare")(compare_command)

# --- issue #6: generated product copy ---------------------------------------------------------------
from evals.copy_audit import audit_app  # noqa: E402
from evals.copy_eval import copy_command  # noqa: E402
from evals.copy_loss import copy_loss_command  # noqa: E402
from evals.copy_verifiers import verifiers_command  # noqa: E402

eval_app.command("copy")(copy_command)
eval_app.command("copy-loss")(copy_loss_command)
audit_app.command("verifiers")(verifiers_command)
eval_app.add_typer(audit_app, name="copy-audit")

# --- simulated shoppers ------------------------------------------------------------------------------
from evals.simulate import simulate_command  # noqa: E402

eval_app.command("simulate")(simulate_command)

# --- issue #16: reason quality -------------------------------------------------------------------------
from evals.reasons_eval import reasons_command  # noqa: E402

eval_app.command("reasons")(reasons_command)

# --- claims checked against the right evidence ---------------------------------------------------------
from evals.claims_eval import claims_command  # noqa: E402
from evals.reasons_audit import reasons_audit_app  # noqa: E402

eval_app.command("claims")(claims_command)
eval_app.add_typer(reasons_audit_app, name="reasons-audit")

# --- reading a shopper's constraints: rules vs rules + LLM ---------------------------------------------
from evals.extract_eval import extract_command  # noqa: E402

eval_app.command("extract")(extract_command)
