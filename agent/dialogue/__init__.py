"""Understanding a message: message + state -> plan.

The rules (`rules`, with the words of `patterns` and the catalog's `vocab`) read a message, an
optional LLM reading is merged after validation (`extract`), and `policy.apply` turns the reading
into changes of the `state` and a plan for the chat layer.
"""

from agent.dialogue.extract import merge_llm_extraction
from agent.dialogue.policy import Plan, apply, keep_budget, record_shown, record_votes, relax_cheaper
from agent.dialogue.rules import Understander, Understanding
from agent.dialogue.state import DialogueState
from agent.dialogue.vocab import CatalogVocab
from agent.text import content_stems

__all__ = ["CatalogVocab", "DialogueState", "Plan", "Understander", "Understanding", "apply", "content_stems", "keep_budget", "merge_llm_extraction", "record_shown", "record_votes", "relax_cheaper"]
