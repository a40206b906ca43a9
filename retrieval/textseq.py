"""TextSeq: SASRec whose item representations are built from the item's text (UniSRec-style,
Hou et al., KDD 2022), so items nobody has bought yet can still be recommended.

Why: SASRec learns one vector per item id. An item with no interactions (new in the catalog, or in
the long tail) keeps its random initial vector, and the full-softmax loss only ever pushes it down:
it is practically never recommended, however well it fits the history. Here an item is first of
all the MiniLM embedding of its text, so a new label tape lands next to the other label tapes and
is scored like them from day one.

Design, kept close to SASRec (same sequence encoder, loss, batching, early stopping, determinism:
it subclasses `SASRecRecommender` and plugs an item module into `SASRecNet`):
- text vector: the normalised all-MiniLM embedding (`Embedder.from_settings`) of a short item text
  (`item_text`: title, brand, most specific category, start of the description); frozen, and
  stored in the model file, so scoring needs no embedder;
- adapter: UniSRec's parametric whitening `dropout(x - b) @ W` (b initialised to the mean text
  vector, W learned), optionally a mixture of `n_experts` such whitenings mixed by a softmax gate
  over x (UniSRec's MoE adapter, without its gate noise). Default: one expert, i.e. plain whitening;
- plus, with `use_id`, a learned item-id embedding that starts at zero, is only ever given to
  items that occur in the training histories (a row for an item that never occurs would only be
  pushed down by the softmax), and can be dropped (whole rows, `id_dropout`) during training. An
  item without interactions is therefore represented by its text alone;
- the same representations are the input embeddings and the output layer: logits = hidden @ R.T
  over the whole catalog (vocabulary = every catalog item, sorted by `id_sort_key`);
- served scores are the logits minus `popularity_correction` * log(1 + the item's training count)
  (`score_batch`): without it the softmax's base rates keep a once-bought item below the
  bestsellers, and the text signal about rare items never reaches the top of the list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from retrieval.collab import id_sort_key, leave_one_out
from retrieval.sasrec import FitReport, SASRecConfig, SASRecNet, SASRecRecommender, load_cached

if TYPE_CHECKING:
    from retrieval.catalog import Item
    from retrieval.config import StoreConfig
    from retrieval.embed import Embedder

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: + log_counts (the popularity correction)
TEXT_DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class TextSeqConfig(SASRecConfig):
    """SASRec's fields (same defaults) plus the item representation's.

    Measured with bench/textseq.py on amazon-office-2014 (leave-one-out test NDCG@10, full catalog,
    1,000 seeded users / the 137 users whose held-out item occurs <= 2x in training):
    SASRec 0.0630 / 0.0036; use_id=True 0.0704 / 0.0000 (78 s); use_id=False 0.0356 / 0.0087 (302 s);
    use_id with id_dropout 0.5: 0.0702 / 0.0000; with n_experts 4: 0.0696 / 0.0031; use_id with no id
    vector for items seen fewer than 3 times (id_min_count=3): 0.0701 / 0.0000. Default: use_id=False,
    text alone: it is the one variant that reaches the rare items (the id variants drown them under
    the well-trained id vectors of frequent ones), and in the ranking stage SASRec already brings the
    id signal, so this source's job is the cold tail (agent/recommend/ltr.py learns when to trust it).
    (That catalog is 5-core: every item occurs in training, so the never-seen case is not measured there.)
    With the serving protocol (refitted on all but the last item, `SourceModels`), 1,000 users / all 137
    cold-item users: SASRec 0.0799 / 0.0277, text alone 0.0422 / 0.0077 (Recall@20 on the cold users
    0.0876 vs SASRec's 0.0511), use_id 0.0854 / 0.0000, use_id with id_init "normal" 0.0856 / 0.0000:
    once refitted, SASRec has seen the one or two purchases of a "cold" item and wins on NDCG@10 there.
    That comparison was on raw logits. The popularity correction (same network, all 4,905 users /
    the 137 cold-item users, serving protocol): beta 0: 0.0426 / 0.0077; 0.25: 0.0397 / 0.0811;
    0.5: 0.0330 / 0.1716; 1: 0.0242 / 0.2341; SASRec with beta 1: 0.0618 / 0.0511 (0: 0.0739 / 0.0277).
    The text model alone gets worse on the whole population, but the rare items it knows about now
    reach the top; the ranking stage, which has popularity as a feature, gained from it (see the README).
    Default beta 1, the theory's value (the score is then the pointwise mutual information of history
    and item), not tuned on these figures."""

    use_id: bool = False
    id_dropout: float = 0.0  # probability of dropping an item's id vector (whole row) per training batch
    adapter_dropout: float = 0.2  # dropout on the centred text vector, UniSRec's default
    n_experts: int = 1  # 1 = plain parametric whitening; > 1 = UniSRec's mixture-of-experts adapter
    id_min_count: int = 1  # items with fewer training interactions get no id vector: text alone represents them
    id_init: str = "zero"  # "zero" | "normal" (see TextItems)
    popularity_correction: float = 1.0  # beta: scores are logits - beta * log(1 + training count) (see score_batch)


def item_text(item: Item, max_description_chars: int = TEXT_DESCRIPTION_CHARS) -> str:
    """The short text an item is represented by: title, brand, most specific category, and the start
    of the description. (The index's `title_text` carries the whole category path and attributes,
    whose shared prefix says little about which item follows which.)"""
    parts = [item.title]
    if item.brand:
        parts.append(f"Brand: {item.brand}")
    if item.category:
        parts.append(f"Category: {item.category}")
    if item.searchable_description and max_description_chars > 0:
        parts.append(item.searchable_description[:max_description_chars])
    return "\n".join(parts)


# --- network ---------------------------------------------------------------------------------


class TextItems(nn.Module):
    """Returns the (n_items, dim) item representations: adapter(text vector) [+ id embedding]."""

    def __init__(self, text_vectors: torch.Tensor, dim: int, cfg: TextSeqConfig, seen: torch.Tensor | None = None) -> None:
        super().__init__()
        n, d = text_vectors.shape
        self.register_buffer("text", text_vectors.float().clone(), persistent=False)  # saved once, outside the state dict
        self.n_experts = max(1, cfg.n_experts)
        self.bias = nn.Parameter(self.text.mean(0).repeat(self.n_experts, 1))  # whitening centre starts at the mean
        # Output components start at std ~ 1/sqrt(dim), like SASRec's item embeddings.
        self.weight = nn.Parameter(torch.randn(self.n_experts, d, dim) / (dim**0.5 * max(float((self.text - self.text.mean(0)).norm(dim=1).mean()), 1e-6)))
        self.gate = nn.Linear(d, self.n_experts, bias=False) if self.n_experts > 1 else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)  # start as an even mixture
        self.drop = nn.Dropout(cfg.adapter_dropout)
        self.use_id = cfg.use_id
        self.id_dropout = cfg.id_dropout
        if cfg.use_id:
            # "zero": an item's id vector starts empty and grows only from its interactions; "normal":
            # SASRec's start (std 1/sqrt(dim)), which lets a rarely bought item be told apart at once.
            init = torch.zeros(n, dim) if cfg.id_init == "zero" else torch.randn(n, dim) / dim**0.5
            self.id_emb = nn.Parameter(init)
            mask = torch.ones(n) if seen is None else seen.float()
            self.register_buffer("id_mask", mask.unsqueeze(1))  # 1 = item occurs in the training histories

    def forward(self) -> torch.Tensor:
        x = self.text
        centred = self.drop(x.unsqueeze(1) - self.bias)  # (n, experts, d)
        experts = torch.einsum("ned,edk->nek", centred, self.weight)
        if self.gate is None:
            out = experts[:, 0]
        else:
            out = (torch.softmax(self.gate(x), dim=-1).unsqueeze(-1) * experts).sum(1)
        if self.use_id:
            ids = self.id_emb * self.id_mask
            if self.training and self.id_dropout > 0:
                ids = ids * (torch.rand(ids.size(0), 1) >= self.id_dropout)
            out = out + ids
        return out


# --- recommender -----------------------------------------------------------------------------


class TextSeqRecommender(SASRecRecommender):
    """Sequential recommender over text-based item representations; `score` gives next-item logits
    over `item_ids`, items without any interaction included.

    `text_vectors[i]` is the (normalised) text embedding of `item_ids[i]`: pass them directly (tests),
    or build them with `embed_items`."""

    name = "TextSeq"

    def __init__(self, item_ids: Iterable[str], text_vectors: np.ndarray, config: TextSeqConfig | None = None, *, threads: int | None = 1) -> None:
        ids = list(item_ids)
        if len(set(ids)) != len(ids):
            raise ValueError("item_ids must be unique")
        vectors = np.asarray(text_vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"text_vectors must be (len(item_ids)={len(ids)}, d); got {vectors.shape}")
        super().__init__(ids, config or TextSeqConfig(), threads=threads)
        self.config: TextSeqConfig
        self.text_vectors = vectors
        self.log_counts = np.zeros(len(ids), dtype=np.float32)  # log(1 + count) per item, set by fit
        self._set_vocabulary(ids)

    def score_batch(self, histories: Sequence[Sequence[str]], batch_size: int = 1024) -> np.ndarray:
        """Next-item logits minus `popularity_correction` * log(1 + the item's training count).

        Why: a softmax over next items learns p(item | history), which carries each item's base rate:
        an item bought once stays below the bestsellers however well its text fits the history. The
        correction (post-hoc logit adjustment, Menon et al., ICLR 2021; with beta = 1 the score is the
        pointwise mutual information of history and item) ranks items by how much more likely the
        history makes them than their base rate, which is what lifts the rare items this model exists
        for. The ranking stage gets popularity as a separate feature and learns how much to add back.
        The same corrected scores pick the early-stopping epoch: the model is selected for what it serves."""
        scores = super().score_batch(histories, batch_size)
        if self.config.popularity_correction:
            scores -= self.config.popularity_correction * self.log_counts
        return scores

    def _new_net(self, train: Mapping[str, Sequence[str]]) -> SASRecNet:
        counts = torch.zeros(len(self.item_ids))
        for history in train.values():
            for i in self._known(history):
                counts[i] += 1
        self.log_counts = np.log1p(counts.numpy()).astype(np.float32)
        seen = counts >= max(1, self.config.id_min_count)  # rarer items are represented by their text alone
        items = TextItems(torch.from_numpy(self.text_vectors), self.config.dim, self.config, seen)
        return SASRecNet(len(self.item_ids), self.config, items=items)

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Weights + vocabulary + text vectors + config + fit report, loadable with weights_only."""
        if self.net is None:
            raise RuntimeError("nothing to save: the model is not trained")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "kind": "textseq",
            "config": asdict(self.config),
            "item_ids": self.item_ids,
            "text_vectors": torch.from_numpy(self.text_vectors),
            "log_counts": torch.from_numpy(self.log_counts),
            "state_dict": self.net.state_dict(),
            "report": asdict(self.report),
            "meta": self.meta,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TextSeqRecommender:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT_VERSION or payload.get("kind") != "textseq":
            raise ValueError(f"{path}: not a TextSeq file of format {FORMAT_VERSION} (got {payload.get('kind')!r} {payload.get('format')!r}); retrain it")
        model = cls(payload["item_ids"], payload["text_vectors"].numpy(), TextSeqConfig(**payload["config"]))
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the global RNG alone
            model.net = model._new_net({})
        model.net.load_state_dict(payload["state_dict"])
        model.net.eval()
        model.log_counts = payload["log_counts"].numpy()
        model.report = FitReport(**payload["report"])
        model.meta = dict(payload.get("meta", {}))
        return model


# --- text vectors ----------------------------------------------------------------------------


def embed_items(items: Sequence[Item], embedder: Embedder, *, progress: bool = False) -> np.ndarray:
    """(len(items), dim) normalised text vectors of `item_text`, in the order given."""
    return embedder.encode([item_text(i) for i in items], show_progress=progress)


def embed_model_id(settings: StoreConfig) -> str:
    """`Embedder.from_settings(settings).model_id` without loading the model (a request checking the
    cache must not load it); `load_or_train_textseq` checks the two agree when it does embed."""
    from retrieval.embed import default_embed_model_path

    path = Path(settings.embed_model) if settings.embed_model else default_embed_model_path()
    name = path.name if path.name != "model" else path.parent.name
    return name if settings.embed_backend == "torch" else f"{name}-{settings.embed_backend}"


# --- cache -----------------------------------------------------------------------------------


def textseq_path(settings: StoreConfig, catalog: str) -> Path:
    return settings.models_dir / f"textseq-{catalog}.pt"


def _fingerprint(item_ids: Sequence[str], texts: Sequence[str], model_id: str, histories: Mapping[str, Sequence[str]], config: TextSeqConfig, epochs: int) -> str:
    texts_hash = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()
    blob = json.dumps([list(item_ids), texts_hash, model_id, sorted(histories.items()), asdict(config), epochs], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_train_textseq(
    settings: StoreConfig,
    catalog: str,
    *,
    config: TextSeqConfig | None = None,
    epochs: int = 200,
    retrain: bool = False,
    progress: bool = True,
    train: bool = True,
    embedder: Embedder | None = None,
) -> TextSeqRecommender | None:
    """The cached model at `settings.models_dir / textseq-<catalog>.pt`, trained first if missing or
    stale (other items, item texts, embedding model, histories, config or epochs). Training sees only
    the leave-one-out train histories. `train=False`: None instead of training (requests never train).
    `embedder`: an already loaded one to reuse (default `Embedder.from_settings(settings)`)."""
    from retrieval.registry import load_catalog, load_interactions

    config = config or TextSeqConfig(seed=settings.seed)
    items = sorted(load_catalog(settings, catalog).items.values(), key=lambda i: id_sort_key(i.id))
    item_ids = [i.id for i in items]
    texts = [item_text(i) for i in items]
    model_id = embed_model_id(settings)
    train_histories, _held_out = leave_one_out(load_interactions(settings, catalog))
    fingerprint = _fingerprint(item_ids, texts, model_id, train_histories, config, epochs)
    path = textseq_path(settings, catalog)
    cached = None if retrain else load_cached(TextSeqRecommender, path, fingerprint, train=train)
    if cached is not None or not train:
        return cached
    if embedder is None:
        from retrieval.embed import Embedder

        embedder = Embedder.from_settings(settings)
    if embedder.model_id != model_id:
        raise RuntimeError(f"embedder model id {embedder.model_id!r} differs from the one derived from settings ({model_id!r})")
    start = time.perf_counter()
    vectors = embedder.encode(texts, show_progress=progress)
    embed_seconds = time.perf_counter() - start
    model = TextSeqRecommender(item_ids, vectors, config)
    model.fit(train_histories, epochs=epochs, progress=progress)
    model.meta = {
        "fingerprint": fingerprint,
        "catalog": catalog,
        "embed_model_id": model_id,
        "embed_seconds": round(embed_seconds, 1),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    model.save(path)
    log.info("trained TextSeq in %.0f s (best epoch %d, val NDCG@10 %.4f); saved to %s", model.report.seconds, model.report.best_epoch, model.report.best_val_ndcg10 or 0.0, path)
    return model
