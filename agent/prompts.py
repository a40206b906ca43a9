"""Named, versioned prompt templates (Jinja2 files in the `prompts/` package).

Why files and names: evals compare prompt variants (`rerank_onepass.v1` vs `.v2`) by passing a
name, with no code change, and a result can record exactly which template (and which content
hash) produced it.

Template format: one `.j2` file per prompt, holding `{% block system %}` and `{% block user %}`;
`render_messages` renders each block into one chat `Message` (system first). A template may also
hold a worked example as `{% block example_user %}` + `{% block example_assistant %}`:
`render_chat` sends it as a real chat turn between system and user (a small model imitates a
shown answer far better than a described format); `render_messages` leaves it out.

Untrusted text (catalog titles/descriptions, user messages) must only be inserted through the
`data` filter and only inside a delimited data section (`<<<ITEM A ... >>>`). The filter removes
the delimiters from the text itself, so a description cannot close its section early and pose as
instructions; every system block says that data sections are data, never instructions.
"""

from __future__ import annotations

import hashlib
import re
import threading
from functools import lru_cache
from pathlib import Path

import jinja2

from agent.engines.base import Message
from agent.settings import package_dir

TEMPLATE_SUFFIX = ".j2"
BLOCK_ROLES = ("system", "user")
EXAMPLE_BLOCKS = ("example_user", "example_assistant")

# The prompt a component uses unless told otherwise, by kind. Recommender(prompts={...}) and the
# evals override these by kind, e.g. {"rerank_onepass": "rerank_onepass.v2"}.
DEFAULT_PROMPTS: dict[str, str] = {
    "rerank_onepass": "rerank_onepass.v1",
    "rerank_listwise": "rerank_listwise.v1",
    "reason": "reason.v2",  # v2 adds a worked example; compare with bench/rerank.py --reason-prompt
}

DATA_OPEN = "<<<"
DATA_CLOSE = ">>>"
_DELIMITER_RUN = re.compile(r"<{2,}|>{2,}|«|»")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACE = re.compile(r"\s+")


class PromptError(ValueError):
    """A prompt name that does not exist, or a template that does not render."""


def prompts_dir() -> Path:
    """The folder of the `prompts` package (found without importing it)."""
    return package_dir("prompts")


def data_text(value: object, limit: int | None = None) -> str:
    """Make untrusted text safe to place inside a data section.

    Runs of `<`/`>` (the section delimiters) become single angle quotes, control characters and
    newlines collapse to spaces (a description cannot fake a new prompt line such as
    "SYSTEM:"), and the result is cut at `limit` characters on a word boundary.
    """
    text = "" if value is None else str(value)
    text = _DELIMITER_RUN.sub(lambda m: "‹" if m.group(0)[0] in "<«" else "›", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        cut = text[:limit]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-") + "…"
    return text


def _label(index: int) -> str:
    """0 -> "A", 25 -> "Z" (the re-ranker never shows more than 26 candidates)."""
    return chr(ord("A") + index)


@lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, never an empty string
        autoescape=False,  # plain text prompts; safety comes from the data filter + sections
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["data"] = data_text
    env.globals["label"] = _label
    env.globals["DATA_OPEN"] = DATA_OPEN
    env.globals["DATA_CLOSE"] = DATA_CLOSE
    return env


_lock = threading.Lock()


def _file_name(name: str) -> str:
    name = name.strip()
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise PromptError(f"bad prompt name {name!r}; use a name such as 'rerank_onepass.v1'")
    return name if name.endswith(TEMPLATE_SUFFIX) else name + TEMPLATE_SUFFIX


def canonical_name(name: str) -> str:
    """'rerank_onepass.v1.j2' and 'rerank_onepass.v1' both -> 'rerank_onepass.v1'."""
    return _file_name(name).removesuffix(TEMPLATE_SUFFIX)


def prompt_kind(name: str) -> str:
    """'rerank_onepass.v2' -> 'rerank_onepass' (everything before the version)."""
    return canonical_name(name).split(".", 1)[0]


def list_prompts(kind: str | None = None) -> list[str]:
    """Names of the available templates (without .j2), optionally only one kind, sorted."""
    names = sorted(p.name.removesuffix(TEMPLATE_SUFFIX) for p in prompts_dir().glob("*" + TEMPLATE_SUFFIX))
    if kind is None:
        return names
    return [n for n in names if n.split(".", 1)[0] == kind]


def prompt_source(name: str) -> str:
    path = prompts_dir() / _file_name(name)
    if not path.is_file():
        raise PromptError(f"no prompt named {canonical_name(name)!r} in {prompts_dir()}; available: {', '.join(list_prompts()) or 'none'}")
    return path.read_text(encoding="utf-8")


def prompt_fingerprint(name: str) -> str:
    """Short content hash of a template, for eval records (a name can be edited in place)."""
    return hashlib.sha256(prompt_source(name).encode()).hexdigest()[:12]


def resolve_prompt(kind: str, overrides: dict[str, str] | None = None) -> str:
    """The template name to use for `kind`: an override (by kind) or the default."""
    name = (overrides or {}).get(kind) or DEFAULT_PROMPTS.get(kind)
    if not name:
        raise PromptError(f"no default prompt for kind {kind!r}; pass one in prompts={{{kind!r}: '<name>'}}")
    if prompt_kind(name) != kind:
        raise PromptError(f"prompt {name!r} is not a {kind!r} prompt")
    prompt_source(name)  # fail early with the list of names
    return canonical_name(name)


def render_messages(name: str, **variables: object) -> list[Message]:
    """Render template `name` into chat messages ([system,] user).

    Raises PromptError for an unknown name, a template without a user block, or a variable the
    template needs but was not given (StrictUndefined)."""
    parts = _render_blocks(name, BLOCK_ROLES, variables)
    return [Message(role=role, content=parts[role]) for role in BLOCK_ROLES if parts.get(role)]


def render_chat(name: str, **variables: object) -> list[Message]:
    """Like `render_messages`, plus the template's worked example (if it has one) as a user +
    assistant turn between the system and the user message."""
    parts = _render_blocks(name, BLOCK_ROLES + EXAMPLE_BLOCKS, variables)
    messages = [Message(role="system", content=parts["system"])] if parts.get("system") else []
    if parts.get("example_user") and parts.get("example_assistant"):
        messages.append(Message(role="user", content=parts["example_user"]))
        messages.append(Message(role="assistant", content=parts["example_assistant"]))
    messages.append(Message(role="user", content=parts["user"]))
    return messages


def _render_blocks(name: str, blocks: tuple[str, ...], variables: dict[str, object]) -> dict[str, str]:
    file_name = _file_name(name)
    prompt_source(name)  # clear error for unknown names
    with _lock:  # jinja2's loader cache is not documented as thread-safe
        env = _environment(str(prompts_dir()))
        template = env.get_template(file_name)
    try:
        context = template.new_context(dict(variables))
        parts = {block: "".join(template.blocks[block](context)).strip() for block in blocks if block in template.blocks}
    except jinja2.UndefinedError as exc:
        raise PromptError(f"prompt {canonical_name(name)!r}: {exc.message}; pass it to render_messages") from exc
    if not parts.get("user"):
        raise PromptError(f"prompt {canonical_name(name)!r} has no (or an empty) user block")
    return parts
