"""Understanding a message: dialogue state, the catalog's vocabulary, rules, validated LLM
extraction, and the policy that turns a reading into state changes and a plan."""

from agent.dialogue.rules import (
    CatalogVocab,
    DialogueState,
    Plan,
    Understander,
    Understanding,
    apply,
    content_stems,
    merge_llm_extraction,
)

__all__ = ["CatalogVocab", "DialogueState", "Plan", "Understander", "Understanding", "apply", "content_stems", "merge_llm_extraction"]
