"""One typed settings object for the whole program, read from `AISLE_*` env vars (and CLI flags).

Nothing else in the code reads the environment: modules take a `Settings` (or plain arguments),
so tests and the CLI can build one explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.config import EmbedBackend, StorePaths, package_dir

__all__ = ["OFFLINE_ENV", "REPO_ROOT", "Settings", "force_offline", "package_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# The program must never reach a model hub or phone home: set these before transformers,
# sentence-transformers, chromadb or gradio are imported anywhere.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    # OpenMP (libgomp, torch's CPU threads) waits between ops by spinning 3,000 rounds, then sleeps.
    # Measured on the 2-core box (SmolLM2 decode tok/s; MiniLM query embedding p50), quiet / beside
    # another torch process:  default spin: 44 / 7.3 tok/s, 4.5 ms;  OMP_WAIT_POLICY=PASSIVE:
    # 26 / 26 tok/s, 11.6 ms;  GOMP_SPINCOUNT=3000: 37 / 20 tok/s, 5.0 ms. Long spinning collapses
    # on a shared CPU; never spinning doubles the cost of small ops (a search query).
    "GOMP_SPINCOUNT": "3000",
}


def force_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


force_offline()


def _default_data_dir() -> Path:
    """`../shared/data` beside the checkout (the layout CI and developers have)."""
    return (REPO_ROOT.parent / "shared" / "data").resolve()


class Settings(BaseSettings, StorePaths):
    model_config = SettingsConfigDict(env_prefix="AISLE_", extra="ignore")

    # --- data and local state ---
    data_dir: Path = Field(default_factory=_default_data_dir, description="Folder holding the catalogs (see ../shared/data/README.md).")
    home: Path = Field(default=REPO_ROOT / ".aisle", description="Local state: Chroma store, converted models, sessions, overlays.")
    catalog: str = Field(default="amazon-office-2014", description="Catalog used when a command names none.")

    # --- retrieval ---
    embed_model: Path | None = Field(default=None, description="sentence-transformers model folder; default: the packaged all-MiniLM-L6-v2.")
    chroma_url: str | None = Field(default=None, description="Chroma server URL (http://host:port); unset = embedded PersistentClient under home/chroma.")
    embed_batch_size: int = 64
    embed_backend: EmbedBackend = Field(
        default="onnx-int8",
        description="How the embedding model runs: onnx-int8 (int8 ONNX Runtime: indexing ~6x as fast as torch, vectors at cosine ~0.99 to torch's), onnx (fp32 ONNX Runtime), "
        "torch. The ONNX model is converted once from the local model into home/models/embed; each backend has its own index.",
    )

    # --- LLM ---
    llm: Literal["auto", "transformers", "llamacpp", "vllm", "openai"] = Field(
        default="auto",
        description="LLM backend: transformers (in-process, CPU), llamacpp (in-process GGUF via llama-cpp-python, the extra), "
        "vllm (in-process vLLM), openai (any OpenAI-compatible server, e.g. vllm serve); auto: llamacpp for an added model or a "
        ".gguf file when llama-cpp-python is installed, else transformers.",
    )
    llm_context: int = Field(default=4096, ge=256, le=131_072, description="Context window the llamacpp engine allocates (tokens; prompt plus reply).")
    llm_model: Path | None = Field(default=None, description="Local HF model folder, .gguf file, or the name of an added model (aisle models list); default: packaged SmolLM2-135M-Instruct.")
    llm_url: str | None = Field(default=None, description="OpenAI-compatible server base URL, e.g. http://127.0.0.1:8000/v1 (vllm serve).")
    llm_api_key: str = "EMPTY"
    llm_served_model: str | None = Field(default=None, description="Model name the server knows; default: the first one it lists.")
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Longest wait for one LLM call while the server is trusted (see llm_probe_timeout_s).")
    llm_probe_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Wait for the one-token probe that decides whether a failed LLM server is trusted again (and for its model list at start-up): "
        "a server that accepts connections and never answers costs this per trial, not llm_timeout_s.",
    )
    llm_breaker_min_s: float = Field(
        default=1.0, ge=0.0, description="After the LLM fails (server down, timeout) its calls fail fast for this long, then one trial call goes through; doubles per failed trial."
    )
    llm_breaker_max_s: float = Field(default=60.0, ge=0.0, description="Longest back-off between trials of a failing LLM (see llm_breaker_min_s).")
    llm_threads: int | None = Field(default=None, description="torch CPU threads for the transformers engine; default: torch's own.")
    llm_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="float32", description="transformers engine: weights dtype for generation (float32: batched output equals one-by-one)."
    )
    llm_score_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="auto", description="transformers engine: dtype of one-pass label scoring; auto = bfloat16 where the CPU has native bf16 (2.5x faster there)."
    )
    llm_ranker_adapter: Path | None = Field(
        default=None,
        description="LoRA adapter folder for one-pass re-ranking (aisle train ranker); default: home/adapters/ranker-<catalog> "
        "when it exists and was trained on the current base model (agent.train.ranker.ranker_adapter_path).",
    )

    # --- recommending (every tuning knob of the pipeline; components get them passed down) ---
    k: int = Field(default=5, ge=1, le=20, description="Items shown per answer.")
    rank_mode: Literal["onepass", "listwise", "none"] = Field(
        default="none",
        description="LLM re-ranking blended into the ranking: one forward pass over letters, generated JSON list, or none (the default: the learned ranker "
        "orders; the packaged model's score carries no signal, see `aisle eval ranking`).",
    )
    n_candidates: int = Field(default=20, ge=1, le=100, description="Candidates the recommender fuses and ranks (recommend command, evals).")
    chat_candidates: int = Field(default=10, ge=1, le=100, description="Candidates per chat turn (fewer: the turn stays under ~2 s on a CPU).")
    n_orders: int = Field(default=1, ge=1, le=8, description="Candidate orders averaged by one-pass re-ranking.")
    calibrate: bool = Field(default=True, description="Divide one-pass label probabilities by the content-free prior (position bias).")
    llm_weight: float = Field(default=0.5, ge=0.0, le=1.0, description="Weight of the LLM score against the retrieval score.")
    collab: Literal["auto", "rrf", "none"] = Field(
        default="auto",
        description="How a shopper's history ranks (agent/recommend/ltr.py): auto = every candidate source + the learned ranker (RRF until `aisle train models`), rrf = sources fused by RRF, none = no history signal.",
    )

    # --- serving many shoppers (agent/engines/scheduler.py, agent/entrypoints/api.py) ---
    llm_slots: int = Field(default=1, ge=1, le=256, description="LLM calls run at once (1 for a CPU engine; more for a vLLM server that batches).")
    llm_queue_max: int = Field(default=16, ge=0, le=10_000, description="LLM calls that may wait; one more answers without the LLM at once.")
    turn_budget_s: float = Field(default=1.0, gt=0, description="How long a turn may wait for the LLM before it answers without it (and says so); bench/serve.py.")
    rate_session_per_min: int = Field(default=30, ge=0, description="Turns per session per minute before 429 (0 = no limit).")
    rate_key_per_min: int = Field(default=600, ge=0, description="Requests per API key (or per client address without a key) per minute before 429 (0 = no limit).")
    history_refresh_s: float = Field(
        default=5.0, ge=0, description="New events (POST /v1/events) refit popularity and co-occurrence in the background at most this often; the catalog is not reopened."
    )
    train_missing: bool = Field(
        default=True,
        description="When the served catalog's models were never trained, `aisle serve` and the UI train them at start-up in a background process "
        "(niced; `aisle train models`) and load them when done; turns meanwhile rank without them and say so.",
    )
    rate_ready_per_min: int = Field(default=120, ge=0, description="GET /ready calls per client address per minute before 429 (0 = no limit); a load balancer probes every few seconds.")
    ready_cache_s: float = Field(default=2.0, ge=0, description="How long /ready reuses its last check (the session store ping is a write): many probes cost one check.")
    auth_free_failures: int = Field(default=5, ge=1, description="Wrong API keys one client address may send before it must wait (429 with Retry-After).")
    auth_backoff_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait after wrong API keys; the wait doubles from 1 s with each wrong key past auth_free_failures, and a right key sent after it clears the count."
    )

    # --- chat ---
    llm_reasons: bool = Field(default=False, description="Chat reasons written by the LLM (grounding-checked) instead of from catalog fields.")
    llm_extract: bool = Field(
        default=False,
        description="LLM reading of constraints, added to the rules' reading after validation. Off: with SmolLM2-135M it read no slot better, "
        "and with Qwen2.5-Coder-1.5B it read more wrong features than right ones (aisle eval extract).",
    )
    llm_intro: bool = Field(default=False, description="Let the LLM write a one-line opener (checked before it is shown).")

    learn_from_sessions: bool = Field(
        default=True, description="Record a shopper's thumbs-up as history of a registered (non built-in) catalog, for the next `aisle train models`."
    )

    # --- generated copy (retrieval/overlay.py) ---
    show_generated_copy: bool = Field(
        default=False,
        description="Show `aisle describe` copy to shoppers as the item's description (and let reasons cite it). Off: it is search text only, which makes cold items findable without publishing unreviewed claims.",
    )

    # --- sessions (agent/chat/store.py) ---
    sessions_url: str | None = Field(
        default=None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL URL (postgresql://user:password@host:port/dbname) of a session store that several replicas share; unset = SQLite at home/sessions.sqlite.",
    )
    session_ttl_s: float = Field(default=30 * 86400, ge=0, description="Seconds a session may stay idle before it expires and is deleted (0 = never).")
    max_sessions_per_key: int = Field(default=10_000, ge=0, description="Live sessions one API key may hold; one more answers 429 (0 = no cap). Without a key, all sessions share one cap.")

    # --- misc ---
    seed: int = 0

    @property
    def sessions_db(self) -> Path:
        return self.home / "sessions.sqlite"

    def as_env(self) -> dict[str, str]:
        """These settings as AISLE_* variables, so a child process (background training) reads back
        exactly these, CLI flags included."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                env[f"AISLE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env
