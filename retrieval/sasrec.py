"""SASRec (Kang & McAuley, ICDM 2018): a small causal transformer over a user's item sequence.

Why this and not only co-occurrence: it reads the order of the whole history, so "bought a
label maker, then labels" predicts differently from "labels, then a label maker".

Design choices, kept small enough to train on 2 CPU cores in minutes:
- item embeddings (tied with the output layer) + learned position embeddings, pre-LayerNorm
  blocks with causal self-attention; padding keys are masked out of attention;
- full softmax cross-entropy over the whole catalog at every position (2.4k items is cheap; the
  literature reports it beating the original BCE with one sampled negative; not re-measured here);
- batches group histories of similar length and are padded only to their longest one, with
  positions counted from the right: exactly what SASRec's fixed left-padding to max_len gives,
  at a fraction of the work;
- early stopping on the second-to-last item of each training history (never the test item);
- a fixed seed and `torch.use_deterministic_algorithms` inside `fit`, so two runs in the same
  environment give identical weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from retrieval.collab import ScoringRecommender, id_sort_key, leave_one_out
from retrieval.progress import job_bar

if TYPE_CHECKING:
    from retrieval.config import StoreConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SASRecConfig:
    """Defaults picked on the validation split of amazon-office-2014 (best val NDCG@10 of 5 runs:
    lr 1e-3/dropout 0.3 reached 0.0685 after 49 epochs; lr 3e-3 with dropout 0.5 reached 0.0712
    after 23; dropout 0.7 or weight decay 0.5 with 2 heads did not do better). Sparse data with
    short histories wants heavy dropout."""

    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    seed: int = 0


@dataclass
class FitReport:
    """What `fit` did, saved next to the weights so a cached model can be explained later."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_val_ndcg10: float | None = None
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    val_ndcg10: list[float] = field(default_factory=list)


# --- network ---------------------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRecNet(nn.Module):
    """Token 0 is padding; item i of the vocabulary is token i + 1.

    Item representations come from a learned id embedding (SASRec), or from `items`: a module whose
    call returns the (n_items, dim) representations of the whole vocabulary (retrieval.textseq).
    Either way they are tied with the output layer; `item_table()` computes them once per batch
    and `forward` / `logits` accept that table so a batch does not compute them twice."""

    def __init__(self, n_items: int, cfg: SASRecConfig, items: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.dim % cfg.n_heads:
            raise ValueError(f"dim {cfg.dim} must be divisible by n_heads {cfg.n_heads}")
        self.max_len = cfg.max_len
        self.scale = math.sqrt(cfg.dim)
        self.items = items
        if items is None:
            self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        if items is None:
            nn.init.normal_(self.item_emb.weight, std=1.0 / self.scale)
        nn.init.normal_(self.pos_emb.weight, std=1.0 / self.scale)
        if items is None:
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim): row 0 is padding (never read: padded inputs are masked, logits drop it)."""
        if self.items is None:
            return self.item_emb.weight
        reprs = self.items()
        return torch.cat([reprs.new_zeros(1, reprs.size(1)), reprs])

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, T) left-padded tokens -> (batch, T, dim) hidden states; T <= max_len."""
        t = seq.size(1)
        valid = seq > 0
        positions = torch.arange(self.max_len - t, self.max_len, device=seq.device)  # right-aligned
        if self.items is None:
            emb = self.item_emb(seq)
        else:
            emb = F.embedding(seq, self.item_table() if table is None else table)
        x = emb * self.scale + self.pos_emb(positions)
        x = self.drop(x) * valid.unsqueeze(-1)
        causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).tril()
        # Attend to earlier real items; each position may always see itself, so padded rows
        # (whose output is never used) do not become all-masked and NaN.
        mask = (causal & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=seq.device)
        mask = mask.unsqueeze(1)  # (batch, 1 head-broadcast, T, T)
        for block in self.blocks:
            x = block(x, mask) * valid.unsqueeze(-1)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(..., dim) -> (..., n_items) over vocabulary items (padding column dropped)."""
        return hidden @ (self.item_table() if table is None else table)[1:].T


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with n intra-op threads, then restore. This model's ops are tiny, so threads mostly
    spin; on our shared, busy 2-core machine 1 thread trained an epoch in 2.8 s, 2 threads in 30 s."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _length_buckets(examples: Sequence[Sequence[int]], batch_size: int, rng: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: most histories are short (median 7) and a batch is
    padded to its longest member, so bucketing cuts the work several-fold at the same loss."""
    shuffled = torch.randperm(len(examples), generator=rng).tolist()
    by_length = sorted(shuffled, key=lambda i: len(examples[i]))  # stable: random within a length
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=rng).tolist()]


def _pad_left(seqs: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    length = length or max(1, max((len(s) for s in seqs), default=1))
    out = torch.zeros(len(seqs), length, dtype=torch.long)
    for r, s in enumerate(seqs):
        s = list(s)[-length:]
        if s:
            out[r, length - len(s) :] = torch.tensor(s, dtype=torch.long)
    return out


# --- recommender -----------------------------------------------------------------------------


class SASRecRecommender(ScoringRecommender):
    """Sequential recommender; `score` gives next-item logits over `item_ids`."""

    def __init__(self, item_ids: Iterable[str] | None = None, config: SASRecConfig | None = None, *, threads: int | None = 1) -> None:
        self.config = config or SASRecConfig()
        self.threads = threads  # torch intra-op threads for fit and scoring; None = leave torch's setting
        self._catalog = list(item_ids) if item_ids is not None else None
        self.net: SASRecNet | None = None
        self.report = FitReport()
        self.meta: dict[str, Any] = {}

    name = "SASRec"  # progress bars and messages

    def _new_net(self, train: Mapping[str, Sequence[str]]) -> SASRecNet:
        """A freshly initialised network over the vocabulary; `train` are the histories it will
        be fitted on (subclasses may look at which items occur in them)."""
        return SASRecNet(len(self.item_ids), self.config)

    # tokens are vocabulary index + 1 (0 is padding)
    def _tokens(self, history: Sequence[str]) -> list[int]:
        return [i + 1 for i in self._known(history)]

    def fit(
        self,
        histories: Mapping[str, Sequence[str]],
        epochs: int = 200,
        *,
        validate: bool = True,
        patience: int = 10,
        progress: bool = True,
        val: tuple[Sequence[Sequence[str]], Sequence[str]] | None = None,
    ) -> FitReport:
        """Train on `histories` (pass the leave-one-out TRAIN histories, never the test items).

        With `validate`, the last item of every history is held out for early stopping: the
        model trains on the rest, is scored by NDCG@10 on those items after every epoch, and
        the best epoch's weights are kept (stop after `patience` epochs without improvement).
        `val` = (histories, targets) stops on those instead (published valid rows) and trains on
        all of `histories`.
        That internal NDCG is a stopping signal only; reported metrics come from ranx
        (`retrieval.collab.evaluate_leave_one_out`).
        """
        cfg = self.config
        if self._catalog is not None:
            self._set_vocabulary(self._catalog)
        else:
            self._set_vocabulary(sorted({i for s in histories.values() for i in s}, key=id_sort_key))
        if val is not None:
            train = dict(histories)
            keep = [r for r, t in enumerate(val[1]) if t in self._index and self._known(val[0][r])]
            val_targets = {f"row{r}": val[1][r] for r in keep}
            train_view = {**train, **{f"row{r}": list(val[0][r]) for r in keep}}
            val_users = list(val_targets)
        elif validate:
            train, val_targets = leave_one_out(histories)
            val_users = [u for u in sorted(val_targets) if val_targets[u] in self._index and self._known(train[u])]
            train_view = train
        else:
            train, val_targets, val_users = dict(histories), {}, []
            train_view = train
        # each training example: the last max_len + 1 items -> inputs [:-1], next-item targets [1:]
        examples = [t[-(cfg.max_len + 1) :] for u in sorted(train) if len(t := self._tokens(train[u])) >= 2]
        if not examples:
            raise ValueError("no history with 2 or more known items to train on")

        was_deterministic = torch.are_deterministic_algorithms_enabled()
        was_filling = torch.utils.deterministic.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # NaN-filling every torch.empty costs ~10 %
        start = time.perf_counter()
        try:
            with _torch_threads(self.threads), torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
                torch.manual_seed(cfg.seed)
                self.net = self._new_net(train)
                self.report = self._train(examples, train_view, val_targets, val_users, epochs, patience, progress)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.utils.deterministic.fill_uninitialized_memory = was_filling
        self.report.seconds = time.perf_counter() - start
        self.net.eval()
        return self.report

    def _train(
        self,
        examples: list[list[int]],
        train: Mapping[str, Sequence[str]],
        val_targets: Mapping[str, str],
        val_users: list[str],
        epochs: int,
        patience: int,
        progress: bool,
    ) -> FitReport:
        assert self.net is not None
        cfg, net = self.config, self.net
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        order_rng = torch.Generator().manual_seed(cfg.seed)
        report = FitReport()
        best_state: dict[str, torch.Tensor] | None = None
        desc = self.name if val_users else f"{self.name} refit"  # the refit on all history has no validation
        bar = job_bar(range(1, epochs + 1), desc=desc, unit="epoch", enabled=progress)
        for epoch in bar:
            net.train()
            total, count = 0.0, 0
            for batch_ids in _length_buckets(examples, cfg.batch_size, order_rng):
                batch = _pad_left([examples[i] for i in batch_ids])
                inputs, targets = batch[:, :-1], batch[:, 1:]
                keep = (targets > 0) & (inputs > 0)
                table = net.item_table()
                hidden = net(inputs, table)[keep]  # only positions with a real input and a real next item
                loss = F.cross_entropy(net.logits(hidden, table), targets[keep] - 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * int(keep.sum())
                count += int(keep.sum())
            report.losses.append(total / max(count, 1))
            report.epochs_run = epoch
            postfix = {"loss": f"{report.losses[-1]:.3f}"}
            if val_users:
                ndcg = self._val_ndcg10([train[u] for u in val_users], [val_targets[u] for u in val_users])
                report.val_ndcg10.append(ndcg)
                postfix["val_ndcg@10"] = f"{ndcg:.4f}"
                if report.best_val_ndcg10 is None or ndcg > report.best_val_ndcg10:
                    report.best_val_ndcg10, report.best_epoch = ndcg, epoch
                    best_state = copy.deepcopy(net.state_dict())
                elif epoch - report.best_epoch >= patience:
                    bar.set_postfix({**postfix, "best_epoch": str(report.best_epoch)}, refresh=False)
                    break
                postfix["best_epoch"] = str(report.best_epoch)  # early stopping ends the bar before its total
            else:
                report.best_epoch = epoch
            bar.set_postfix(postfix, refresh=False)
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        return report

    @torch.no_grad()
    def _val_ndcg10(self, histories: list[Sequence[str]], targets: list[str]) -> float:
        """Leave-one-out NDCG@10 (one relevant item: 1 / log2(rank + 2)), history items excluded."""
        scores = torch.from_numpy(self.score_batch(histories))
        for r, h in enumerate(histories):
            scores[r, self._known(h)] = -torch.inf
        target_idx = torch.tensor([self._index[t] for t in targets])
        target_scores = scores[torch.arange(len(targets)), target_idx]
        rank = (scores > target_scores[:, None]).sum(1)  # optimistic on ties; logits rarely tie
        gains = torch.where(rank < 10, 1.0 / torch.log2(rank.double() + 2), torch.zeros((), dtype=torch.float64))
        return float(gains.mean())

    @torch.no_grad()
    def score_batch(self, histories: Sequence[Sequence[str]], batch_size: int = 1024) -> np.ndarray:
        """Next-item logits for each history (last max_len known items). An empty or all-unknown
        history still gets a valid row (the same for everyone, a learned prior)."""
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} is not trained: call fit() or load()")
        was_training = self.net.training
        self.net.eval()
        tokens = [self._tokens(h)[-self.config.max_len :] for h in histories]
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))  # similar lengths share a batch
        out = np.empty((len(histories), len(self.item_ids)), dtype=np.float32)
        with _torch_threads(self.threads):
            table = self.net.item_table()
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                hidden = self.net(_pad_left([tokens[i] for i in rows]), table)[:, -1]
                out[rows] = self.net.logits(hidden, table).numpy()
        self.net.train(was_training)
        return out

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Weights + vocabulary + config + fit report, in one file loadable with weights_only."""
        if self.net is None:
            raise RuntimeError("nothing to save: the model is not trained")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "config": asdict(self.config),
            "item_ids": self.item_ids,
            "state_dict": self.net.state_dict(),
            "report": asdict(self.report),
            "meta": self.meta,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # atomic: a crash mid-save never leaves a half-written cache

    @classmethod
    def load(cls, path: Path) -> SASRecRecommender:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported SASRec file format {payload.get('format')!r} (expected {FORMAT_VERSION}); retrain it")
        model = cls(payload["item_ids"], SASRecConfig(**payload["config"]))
        model._set_vocabulary(payload["item_ids"])
        model.net = SASRecNet(len(model.item_ids), model.config)
        model.net.load_state_dict(payload["state_dict"])
        model.net.eval()
        model.report = FitReport(**payload["report"])
        model.meta = dict(payload.get("meta", {}))
        return model


# --- cache -----------------------------------------------------------------------------------


def load_cached(cls: type[SASRecRecommender], path: Path, fingerprint: str, *, train: bool) -> Any:
    """The model saved at `path` when it was trained on exactly the data `fingerprint` names, else
    None (a missing, unreadable or stale file; logged, with "retraining" when the caller will)."""
    if not path.is_file():
        return None
    try:
        model = cls.load(path)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        log.warning("cached %s at %s is unusable (%s)%s", cls.name, path, exc, "; retraining" if train else "")
        return None
    if model.meta.get("fingerprint") == fingerprint:
        return model
    log.info("cached %s at %s was trained on other data or settings%s", cls.name, path, "; retraining" if train else "")
    return None


def sasrec_path(settings: StoreConfig, catalog: str) -> Path:
    return settings.models_dir / f"sasrec-{catalog}.pt"


def _fingerprint(item_ids: Sequence[str], histories: Mapping[str, Sequence[str]], config: SASRecConfig, epochs: int) -> str:
    """Hash of everything the weights depend on, so a cache built from other data is not reused."""
    blob = json.dumps([list(item_ids), sorted(histories.items()), asdict(config), epochs], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_train_sasrec(
    settings: StoreConfig,
    catalog: str,
    *,
    config: SASRecConfig | None = None,
    epochs: int = 200,
    retrain: bool = False,
    progress: bool = True,
    train: bool = True,
) -> SASRecRecommender | None:
    """The cached model at `settings.models_dir / sasrec-<catalog>.pt`, trained first if missing
    or stale. Training sees only the leave-one-out train histories (the last item of every user
    stays unseen, so evals on it are fair). `train=False`: None instead of training (a request
    must not train for minutes because the catalog or its history changed)."""
    from retrieval.registry import load_catalog, load_interactions

    config = config or SASRecConfig(seed=settings.seed)
    item_ids = sorted(load_catalog(settings, catalog).items, key=id_sort_key)
    # Not `train`: that name is the caller's "may I fit?" flag, and rebinding it to the (truthy)
    # histories made every request with a history train for minutes.
    histories, _held_out = leave_one_out(load_interactions(settings, catalog))
    fingerprint = _fingerprint(item_ids, histories, config, epochs)
    path = sasrec_path(settings, catalog)
    cached = None if retrain else load_cached(SASRecRecommender, path, fingerprint, train=train)
    if cached is not None or not train:
        return cached
    model = SASRecRecommender(item_ids, config)
    model.fit(histories, epochs=epochs, progress=progress)
    model.meta = {"fingerprint": fingerprint, "catalog": catalog, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    model.save(path)
    log.info("trained SASRec in %.0f s (best epoch %d, val NDCG@10 %.4f); saved to %s", model.report.seconds, model.report.best_epoch, model.report.best_val_ndcg10 or 0.0, path)
    return model
