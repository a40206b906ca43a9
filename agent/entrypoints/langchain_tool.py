"""aisle inside a LangChain bot: in process (a Runnable and a StructuredTool around `Agent`), or
over HTTP (a `ChatOpenAI` pointed at `aisle serve`).

    from agent.chat.agent import Agent
    from agent.entrypoints.langchain_tool import make_runnable, make_tool

    agent = Agent(Settings())
    shop = make_runnable(agent)
    out = shop.invoke({"message": "a label maker by Brother"})
    out = shop.invoke({"session_id": out["session_id"], "message": "why the first?"})
    # out == {"session_id": ..., "reply": "...", "items": [{"id", "title", "reason", "score"}, ...]}

    tool = make_tool(agent)                 # give it to a tool-calling LLM: llm.bind_tools([tool])
    remote = aisle_chat_model("http://127.0.0.1:8000/v1", session_id=sid)   # a chat model

Input {session_id?, message}; output {session_id, reply, items: [{id, title, reason, score}]}.
Omitting session_id starts a new conversation; pass the returned id back to continue it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from agent.chat.agent import Agent, TurnResult

TOOL_DESCRIPTION = (
    "Recommend products from the shop's catalog. Pass the shopper's words as `message` (what they want, "
    "follow-ups such as 'cheaper', 'not that brand', 'more like the second one', 'why the first?'). "
    "Pass back the `session_id` from the previous call to continue the same conversation. Returns a reply "
    "to show the shopper and the items with a reason each; only these items exist in the catalog."
)


class AisleInput(BaseModel):
    message: str = Field(..., description="The shopper's message, verbatim.")
    session_id: str | None = Field(None, description="The session_id returned by the previous call; omit to start a new conversation.")


def turn_output(result: TurnResult) -> dict[str, Any]:
    return {
        "session_id": result.session_id,
        "reply": result.reply,
        "items": [i.to_dict() for i in result.items],
    }


class AisleRunnable(Runnable[dict[str, Any], dict[str, Any]]):
    """`{session_id?, message}` -> `{session_id, reply, items}`; batch/ainvoke come from Runnable."""

    name = "aisle"

    def __init__(self, agent: Agent, catalog: str | None = None) -> None:
        self.agent = agent
        self.catalog = catalog

    @property
    def InputType(self) -> type[AisleInput]:  # noqa: N802 (LangChain's name)
        return AisleInput

    def invoke(self, input: dict[str, Any] | AisleInput, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        data = AisleInput.model_validate(input if not isinstance(input, AisleInput) else input.model_dump())
        return self._call_with_config(lambda d: turn_output(self.agent.turn(d.session_id, d.message, catalog=None if d.session_id else self.catalog)), data, config)


def make_runnable(agent: Agent, catalog: str | None = None) -> AisleRunnable:
    return AisleRunnable(agent, catalog)


def make_tool(agent: Agent, catalog: str | None = None, *, name: str = "aisle_recommend", remember_session: bool = True) -> StructuredTool:
    """A tool for tool-calling LLMs. With `remember_session`, calls without a session_id continue the
    tool's own conversation (one tool per end user), so the LLM need not carry the id."""
    own: dict[str, str] = {}

    def recommend(message: str, session_id: str | None = None) -> dict[str, Any]:
        sid = session_id or (own.get("id") if remember_session else None)
        out = turn_output(agent.turn(sid, message, catalog=None if sid else catalog))
        if remember_session:
            own["id"] = out["session_id"]
        return out

    return StructuredTool.from_function(func=recommend, name=name, description=TOOL_DESCRIPTION, args_schema=AisleInput)


def aisle_chat_model(base_url: str, *, session_id: str | None = None, api_key: str | None = None, model: str = "aisle", timeout: float = 120.0) -> Any:
    """A LangChain `ChatOpenAI` that talks to `aisle serve` (its /v1/chat/completions).

    The session travels in the X-Aisle-Session header; create one with POST /v1/sessions (or read the
    header of a first reply)."""
    from langchain_openai import ChatOpenAI

    headers = {"X-Aisle-Session": session_id} if session_id else {}
    return ChatOpenAI(base_url=base_url, api_key=api_key or "none", model=model, default_headers=headers, timeout=timeout, max_retries=0)
