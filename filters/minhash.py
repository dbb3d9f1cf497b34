"""The near-duplicate core: shingling, MinHash signatures, LSH banding, verification, connected components.

Pure numpy, no step and no dataset: ``meddata.filters.dedup`` and ``meddata dedup`` build on it.

Why not datasketch's ``MinHash.update`` per document: it hashes every shingle with SHA-1 in
Python and permutes one document at a time (a few hundred to a few thousand docs/s). Here a
chunk of documents is tokenised and hashed at once over its UTF-8 bytes (prefix-sum
polynomial hashes, no per-token Python), and each permutation is one vectorised
``a*h + b`` over every shingle of the chunk followed by ``np.minimum.reduceat`` per document.

The signatures are datasketch's: the same ``affine32`` permutation scheme, the same
``(a, b)`` parameters for a given ``seed``. ``signature_row == MinHash(num_perm, seed,
hashfunc=int).update_batch(shingle_hash32)`` (see :func:`to_minhash`), so they plug into
``MinHashLSH`` and friends; only the shingle hash differs from datasketch's SHA-1.

LSH bands/rows come from datasketch's own optimiser (``datasketch.lsh._optimal_param``) or,
when candidates are verified afterwards, from the cheapest (bands, rows) whose collision
probability at the threshold reaches ``min_recall`` (datasketch's false-positive integral is
the cost). Clusters are the connected components of *all* accepted pairs, so the result does
not depend on row order. :func:`near_duplicates` keeps only one 64-bit key per band and text
(written band-major to disk by the workers), so its memory does not grow with signatures.
:func:`near_duplicates` with ``executor="ray"`` computes the same clusters with Ray tasks: band keys grouped by a
shuffle, candidates verified where they are grouped, components by min-label propagation.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

U32 = np.uint32
U64 = np.uint64
EMPTY = np.iinfo(np.uint32).max  # datasketch's "no value seen" in every slot

# Independent odd 64-bit multipliers (from SplitMix64) that make window hashes order-sensitive.
_MULTIPLIERS = np.array([
    0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93,
    0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3,
    0x1D8E4E27C47D124F, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
    0x85EBCA77C2B2AE63, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x9FB21C651E98DF25,
], dtype=U64) | U64(1)
_POLY = 0x100000001B3  # FNV-1 64-bit prime: the byte base of token hashes (odd, so invertible mod 2^64)
_POLY_INV = pow(_POLY, -1, 1 << 64)
# Texts are hashed in chunks of about this many characters (bounds memory; the pool's work unit).
CHUNK_CHARS = 1_000_000


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads the poor low bits of polynomial hashes."""
    h = h ^ (h >> U64(33))
    h = h * U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> U64(33))
    h = h * U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> U64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, the pre-mix datasketch applies before its permutations."""
    h = h ^ (h >> U32(16))
    h = h * U32(0x85EBCA6B)
    h = h ^ (h >> U32(13))
    h = h * U32(0xC2B2AE35)
    return h ^ (h >> U32(16))


def _geometric(base: int, n: int) -> np.ndarray:
    """base^i mod 2^64 for i < n: a 1024-wide cumprod block times cumprod of block strides
    (one flat cumprod over millions of uint64 is slow)."""
    width = 1024
    small = np.full(width, base, dtype=U64)
    small[0] = 1
    small = np.cumprod(small)
    step = U64((int(small[-1]) * base) & 0xFFFFFFFFFFFFFFFF)
    stride = np.full(-(-n // width), step, dtype=U64)
    stride[0] = 1
    return (np.cumprod(stride)[:, None] * small[None, :]).ravel()[:n]


@functools.lru_cache(maxsize=2)
def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(POLY^i, POLY^-i) mod 2^64 for i < n; numpy's wrapping uint64 products do the modulo."""
    return _geometric(_POLY, n), _geometric(_POLY_INV, n)


def _powers_for(n: int) -> tuple[np.ndarray, np.ndarray]:
    size = 1 << max(16, math.ceil(math.log2(n + 1)))  # few distinct sizes -> the cache hits
    return _powers(size)


def _token_lut(normalize: bool) -> np.ndarray:
    """Which bytes belong to a token: ``\\w`` when normalising, non-space otherwise.
    Bytes >= 128 count as token bytes; non-ASCII separators are replaced by a regex first."""
    lut = np.zeros(256, dtype=bool)
    if normalize:
        for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
            lut[c] = True
    else:  # what str.split() treats as whitespace in ASCII
        lut[:] = True
        lut[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = False
    lut[128:] = True
    return lut


_LUTS = {True: _token_lut(True), False: _token_lut(False)}
_NON_WORD = re.compile(r"[^\w]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Shingler:
    """How a text becomes a set of shingles.

    ``unit="word"``: n consecutive tokens; ``unit="char"``: n consecutive characters of the
    normalised text. ``normalize`` makes shingles case-, punctuation- and
    whitespace-insensitive (tokens are ``\\w+`` runs of the lower-cased text); without it,
    tokens are whitespace-separated and case-sensitive. A text shorter than n units is one
    shingle, as in the usual datasketch recipe.
    """

    ngram: int = 5
    unit: Literal["word", "char"] = "word"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.ngram > len(_MULTIPLIERS):
            raise ValueError(f"ngram must be between 1 and {len(_MULTIPLIERS)}, got {self.ngram}")
        if self.unit not in ("word", "char"):
            raise ValueError(f"unit must be 'word' or 'char', got {self.unit!r}")

    def hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """64-bit hashes of every shingle of every text, concatenated text by text, and the
        number of shingles of each text (0 when a text has no token)."""
        parts = [self._chunk_hashes(texts[a:b]) for a, b in _chunks(texts, CHUNK_CHARS)]
        if not parts:
            return np.zeros(0, dtype=U64), np.zeros(0, dtype=np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def shingle_sets(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Sorted unique shingle hashes per text."""
        h, counts = self.hashes(texts)
        bounds = np.concatenate(([0], np.cumsum(counts)))
        return [np.unique(h[bounds[i]:bounds[i + 1]]) for i in range(len(texts))]

    def _chunk_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        units, counts = self._word_units(texts) if self.unit == "word" else self._char_units(texts)
        return _windows(units, counts, self.ngram)

    def _word_units(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token hashes over the whole chunk at once: one UTF-8 buffer, token bounds from a
        byte table, each token's polynomial hash from one prefix sum."""
        prepared = list(map(str.lower, texts)) if self.normalize else list(texts)
        joined = "\n".join(prepared)
        if not joined.isascii():  # non-ASCII separators become spaces; lengths in UTF-8 bytes
            sep = _NON_WORD if self.normalize else _SPACE
            prepared = [t if t.isascii() else sep.sub(" ", t) for t in prepared]
            nbytes = np.array([len(t) if t.isascii() else len(t.encode()) for t in prepared], dtype=np.int64)
            joined = "\n".join(prepared)
        else:
            nbytes = np.fromiter(map(len, prepared), dtype=np.int64, count=len(prepared))
        buf = np.frombuffer(joined.encode(), dtype=np.uint8)
        if buf.size == 0:
            return np.zeros(0, dtype=U64), np.zeros(len(texts), dtype=np.int64)
        is_tok = _LUTS[self.normalize].take(buf)
        edges = np.flatnonzero(np.diff(is_tok, prepend=False, append=False))
        starts, ends = edges[0::2], edges[1::2]
        fwd, inv = _powers_for(buf.size + 1)
        prefix = np.zeros(buf.size + 1, dtype=U64)
        np.multiply(buf, inv[:buf.size], out=prefix[1:])
        np.cumsum(prefix[1:], out=prefix[1:])
        tok = fmix64((prefix[ends] - prefix[starts]) * fwd[starts] + (ends - starts).astype(U64))
        bounds = np.concatenate(([0], np.cumsum(nbytes + 1)))  # texts are joined by one separator byte
        return tok, np.diff(np.searchsorted(starts, bounds))

    def _char_units(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.normalize:
            prepared = [" ".join(_NON_WORD.sub(" ", t.lower()).replace("_", " ").split()) for t in texts]
        else:
            prepared = list(texts)
        counts = np.fromiter((len(t) for t in prepared), dtype=np.int64, count=len(prepared))
        cps = np.frombuffer("".join(prepared).encode("utf-32-le"), dtype=np.uint32).astype(U64)
        return fmix64(cps + U64(0x9E3779B97F4A7C15)), counts


def _windows(units: np.ndarray, counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Order-sensitive hashes of every window of ``n`` consecutive units inside each text;
    a text with 1..n-1 units gives one window over all of them.

    Windows are hashed at every position of the concatenated units at once (n multiply-adds),
    then the positions whose window stays inside one text are kept."""
    nwin = np.where(counts >= n, counts - n + 1, (counts > 0).astype(np.int64))
    total = int(nwin.sum())
    out = np.empty(total, dtype=U64)
    if total == 0:
        return out, nwin
    starts = np.cumsum(counts) - counts
    full = counts >= n
    span = len(units) - n + 1
    if span > 0 and full.any():
        acc = units[:span] * _MULTIPLIERS[0]
        tmp = np.empty_like(acc)
        for m in range(1, n):
            np.multiply(units[m:m + span], _MULTIPLIERS[m], out=tmp)
            acc += tmp
        offset = np.arange(len(units)) - np.repeat(starts, counts)  # unit index inside its text
        inside = offset[:span] <= np.repeat(counts - n, counts)[:span]
        long_hashes = fmix64(acc[inside] + U64(n))
        if full.all():
            return long_hashes, nwin
        out[np.repeat(full, nwin)] = long_hashes
    short = np.flatnonzero(~full & (counts > 0))
    if short.size:
        acc = np.zeros(short.size, dtype=U64)
        for m in range(n - 1):
            has = counts[short] > m
            acc[has] += units[starts[short][has] + m] * _MULTIPLIERS[m]
        out[np.repeat(~full & (counts > 0), nwin)] = fmix64(acc + counts[short].astype(U64))
    return out, nwin


def hash32(shingles: np.ndarray) -> np.ndarray:
    """The 32-bit value that stands for a shingle in datasketch's ``hashfunc`` slot."""
    return (shingles >> U64(32)).astype(U32)


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters ``(a, b)`` for ``(num_perm, seed)``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return np.ascontiguousarray(a, dtype=U32), np.ascontiguousarray(b, dtype=U32)


def signatures_from_hashes(shingles: np.ndarray, counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures ``(len(counts), num_perm)`` uint32 from concatenated shingle hashes.

    One pass per permutation over all shingles: ``a*h + b`` wraps modulo 2^32 in uint32
    (datasketch's affine32), then the minimum of each text's segment."""
    a, b = permutations(num_perm, seed)
    out = np.full((num_perm, len(counts)), EMPTY, dtype=U32)
    has = np.flatnonzero(counts > 0)
    if has.size == 0:
        return np.ascontiguousarray(out.T)
    h = fmix32(hash32(shingles))
    seg = (np.cumsum(counts) - counts)[has]
    tmp = np.empty_like(h)
    for k in range(num_perm):
        np.multiply(h, a[k], out=tmp)
        np.add(tmp, b[k], out=tmp)
        out[k, has] = np.minimum.reduceat(tmp, seg)
    return np.ascontiguousarray(out.T)


def _signature_chunk(args: tuple[Shingler, Sequence[str], int, int, bool]):
    shingler, texts, num_perm, seed, keep = args
    h, counts = shingler._chunk_hashes(texts)
    return signatures_from_hashes(h, counts, num_perm, seed), counts, (h if keep else None)


def _chunks(texts: Sequence[str], max_chars: int) -> Iterator[tuple[int, int]]:
    """(start, stop) spans of about ``max_chars`` characters each."""
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    start = 0
    while start < len(texts):
        done = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, done + max_chars, side="left")) + 1)
        stop = min(stop, len(texts))
        yield start, stop
        start = stop


@dataclass
class ShingleStore:
    """Every text's shingle hashes, kept from the signature pass for the exact check."""

    hashes: np.ndarray
    offsets: np.ndarray  # text i owns hashes[offsets[i]:offsets[i + 1]]

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(concatenated hashes, counts) of the texts ``idx``, in that order."""
        counts = self.offsets[idx + 1] - self.offsets[idx]
        first = np.cumsum(counts) - counts
        pos = np.arange(int(counts.sum())) + np.repeat(self.offsets[idx] - first, counts)
        return self.hashes[pos], counts


def _compute(texts: Sequence[str], shingler: Shingler, num_perm: int, seed: int, num_proc: int,
             keep: bool, chunk_chars: int = CHUNK_CHARS) -> tuple[np.ndarray, np.ndarray, ShingleStore | None]:
    jobs = [(shingler, texts[a:b], num_perm, seed, keep) for a, b in _chunks(texts, chunk_chars)]
    if num_proc > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(num_proc, len(jobs), os.cpu_count() or 1)) as pool:
            parts = list(pool.map(_signature_chunk, jobs))
    else:
        parts = [_signature_chunk(j) for j in jobs]
    if not parts:
        return np.zeros((0, num_perm), dtype=U32), np.zeros(0, dtype=np.int64), None
    counts = np.concatenate([p[1] for p in parts])
    store = None
    if keep:
        store = ShingleStore(np.concatenate([p[2] for p in parts]), np.concatenate(([0], np.cumsum(counts))))
    return np.concatenate([p[0] for p in parts]), counts, store


def signatures(texts: Sequence[str], shingler: Shingler, num_perm: int = 128, seed: int = 1,
               num_proc: int = 1, chunk_chars: int = CHUNK_CHARS) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of ``texts`` (``(n, num_perm)`` uint32) and their shingle counts.

    Texts are cut into chunks of about ``chunk_chars`` characters; with ``num_proc > 1`` and
    more than one chunk, chunks run in a process pool."""
    sigs, counts, _ = _compute(texts, shingler, num_perm, seed, num_proc, False, chunk_chars)
    return sigs, counts


def to_minhash(signature: np.ndarray, seed: int = 1):
    """A datasketch ``LeanMinHash`` holding one signature row (to query a ``MinHashLSH``)."""
    from datasketch import LeanMinHash, MinHash

    return LeanMinHash(MinHash(num_perm=len(signature), seed=seed, hashvalues=signature, scheme="affine32"))


# -- LSH -------------------------------------------------------------------------------------

def collision_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that two sets with this Jaccard similarity share at least one band."""
    return 1.0 - (1.0 - similarity ** rows) ** bands


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, min_recall: float | None = None) -> tuple[int, int]:
    """(bands, rows) for a Jaccard threshold.

    Without ``min_recall``: datasketch's ``_optimal_param`` with equal false-positive and
    false-negative weights (what ``MinHashLSH(threshold)`` picks). With it: for each number
    of rows, the fewest bands whose collision probability at ``threshold`` reaches
    ``min_recall`` (``bands * rows <= num_perm``); of those, the one with the smallest
    false-positive integral (datasketch's ``_false_positive_probability``). Used when
    candidates are verified afterwards, so a looser filter costs verification time, never a
    wrong merge.
    """
    from datasketch.lsh import _false_positive_probability, _optimal_param

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    if min_recall is None:
        return _optimal_param(threshold, num_perm, 0.5, 0.5)
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = next((b for b in range(2, num_perm // rows + 1)
                      if collision_probability(threshold, b, rows) >= min_recall), None)
        if bands is None:
            continue
        cost = _false_positive_probability(threshold, bands, rows)
        if best is None or cost < best[0]:
            best = (cost, bands, rows)
    if best is None:  # even one row per band cannot reach it: the most sensitive setting
        return num_perm, 1
    return best[1], best[2]


def _row_keys(sig: np.ndarray, scope: np.ndarray | None) -> np.ndarray:
    """One 64-bit key per row of a signature slice (and scope), to group equal slices."""
    acc = np.zeros(sig.shape[0], dtype=U64)
    for c in range(sig.shape[1]):
        acc = fmix64(acc ^ (sig[:, c].astype(U64) * _MULTIPLIERS[c % len(_MULTIPLIERS)]))
    return acc if scope is None else fmix64(acc ^ scope)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, group starts, group sizes) of equal keys, groups of two or more only."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    bounds = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1], [True])))
    starts, sizes = bounds[:-1], np.diff(bounds)
    many = sizes >= 2
    return order, starts[many], sizes[many]


def _all_pairs(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Every pair inside every group, vectorised per group size; (i, j) with i < j."""
    out = [np.zeros((0, 2), dtype=np.int64)]
    for size in np.unique(sizes):
        members = order[starts[sizes == size][:, None] + np.arange(size)]
        iu, ju = np.triu_indices(int(size), k=1)
        a, b = members[:, iu].ravel(), members[:, ju].ravel()
        out.append(np.stack((np.minimum(a, b), np.maximum(a, b)), axis=1))
    return np.concatenate(out)


def _chain_pairs(keys: np.ndarray) -> np.ndarray:
    """Neighbours in key order with equal keys: connects each group, linear in its size."""
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    a, b = order[same], order[same + 1]
    return np.stack((np.minimum(a, b), np.maximum(a, b)), axis=1)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy's hash-based unique is several times slower on
    millions of integers)."""
    values = np.sort(values)
    if values.size:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def _unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    codes = sorted_unique(pairs[:, 0] * np.int64(n) + pairs[:, 1])
    return np.stack((codes // n, codes % n), axis=1)


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int, scope: np.ndarray | None = None,
                    all_pairs: bool = True) -> np.ndarray:
    """Pairs of rows that share at least one band (and the same scope key), deduplicated.

    ``all_pairs`` lists every pair in a bucket (needed when pairs are verified one by one);
    otherwise consecutive bucket members, which connect the same components."""
    n = sigs.shape[0]
    found = []
    for band in range(bands):
        keys = _row_keys(sigs[:, band * rows:(band + 1) * rows], scope)
        found.append(_all_pairs(*_groups(keys)) if all_pairs else _chain_pairs(keys))
    return _unique_pairs(np.concatenate(found), n) if found else np.zeros((0, 2), dtype=np.int64)


def estimated_similarity(sigs: np.ndarray, pairs: np.ndarray, block: int = 65536) -> np.ndarray:
    """Fraction of equal signature slots per pair: the MinHash estimate of Jaccard.

    Slots are compared on their low 16 bits (half the memory traffic); unequal values agree
    there with probability 2^-16, which moves the estimate by less than 0.0001."""
    low = sigs.astype(np.uint16)
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), block):
        p = pairs[lo:lo + block]
        out[lo:lo + block] = np.count_nonzero(low[p[:, 0]] == low[p[:, 1]], axis=1) / sigs.shape[1]
    return out


def exact_similarity(texts: Sequence[str], pairs: np.ndarray, shingler: Shingler,
                     store: ShingleStore | None = None, block: int = 100_000) -> np.ndarray:
    """Exact Jaccard of the shingle sets of each pair of texts.

    The texts involved become rows of a sparse 0/1 text-by-shingle matrix; a block of pairs
    is then two row gathers and one element-wise product (scipy, no per-pair Python)."""
    from scipy.sparse import csr_matrix

    if len(pairs) == 0:
        return np.zeros(0, dtype=np.float64)
    involved = sorted_unique(pairs.ravel())
    if store:
        h, counts = store.take(involved)
    else:  # a lazy source (LazyContents) reads the rows in one take
        chosen = texts.take(involved) if hasattr(texts, "take") else [texts[i] for i in involved]
        h, counts = shingler.hashes(chosen)
    # Rows: the texts involved; columns: 31-bit shingle fingerprints (int32 indices keep the
    # row gathers cheap; one sort gives sorted, duplicate-free rows). Two different shingles
    # of a pair share a fingerprint with probability ~|A||B|/2^31 (1e-5 for paragraphs),
    # which moves that pair's Jaccard by one shingle.
    width = U64((1 << 31) - 1)
    rank = np.repeat(np.arange(len(involved), dtype=U64), counts)
    keys = sorted_unique((rank << U64(32)) | ((h >> U64(33)) % width))
    rows = (keys >> U64(32)).astype(np.int64)
    size = np.bincount(rows, minlength=len(involved))
    x = csr_matrix((np.ones(len(keys), dtype=bool), (keys & U64(0xFFFFFFFF)).astype(np.int32),
                    np.concatenate(([0], np.cumsum(size))).astype(np.int32)),
                   shape=(len(involved), int(width)))
    x.has_sorted_indices = True
    local = np.searchsorted(involved, pairs)
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), block):
        a, b = local[lo:lo + block, 0], local[lo:lo + block, 1]
        inter = np.diff(x[a].multiply(x[b]).indptr)  # the product keeps shared columns only
        union = size[a] + size[b] - inter
        out[lo:lo + block] = np.divide(inter, union, out=np.ones(len(a)), where=union > 0)
    return out


# -- clustering ------------------------------------------------------------------------------

class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> bool:
        """Join the sets of a and b; False when they were already one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True

    def labels(self) -> np.ndarray:
        """The root of every element (pointer jumping over the whole parent array at once)."""
        from meddata.engine.ray_ops import pointer_jump  # numpy only: Ray is imported when used

        return pointer_jump(np.array(self.parent, dtype=np.int64))


@dataclass
class NearDupResult:
    """Cluster labels per text (``labels[i] == labels[j]``: same cluster) and how they came."""

    labels: np.ndarray
    bands: int
    rows: int
    candidate_pairs: int  # band hits: a pair found by several bands counts once per band
    identical_pairs: int  # rows joined because their signatures are equal
    #: Candidate pairs sent to verification (screen, then exact Jaccard). Locally bands run one
    #: after another and a band's pairs already connected by earlier bands are skipped (a
    #: rejected pair found again by a later band is checked again); on Ray
    #: (``executor="ray"``) all bands are grouped at once and every distinct candidate
    #: pair is checked once. Same clusters either way; only this count differs.
    verified_pairs: int
    accepted_pairs: int  # edges that joined two clusters (the rest were already connected)
    no_shingles: int  # texts with no token at all: never clustered
    lengths: np.ndarray | None = None  # characters per text
    blank: np.ndarray | None = None  # texts that are empty or only whitespace

    def clusters(self) -> list[np.ndarray]:
        """Member indices (ascending) of every cluster of two or more texts, by first member."""
        order = np.argsort(self.labels, kind="stable")
        sl = self.labels[order]
        bounds = np.flatnonzero(np.concatenate(([True], sl[1:] != sl[:-1], [True])))
        groups = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
        return sorted(groups, key=lambda g: int(g[0]))


#: Rows per signature task in :func:`near_duplicates` (the pool's work unit).
CHUNK_ROWS = 2000


def _band_keys_chunk(texts: Sequence[str], shingler: Shingler, num_perm: int, seed: int, bands: int, rows: int):
    """Signatures of ``texts`` reduced to what grouping needs: one 64-bit key of the whole
    signature and one per band (``(bands + 1, len(texts))``), the shingle counts, and each
    text's length and blankness."""
    h, counts = shingler._chunk_hashes(texts)
    sigs = signatures_from_hashes(h, counts, num_perm, seed)
    keys = np.empty((bands + 1, len(texts)), dtype=U64)
    keys[0] = _row_keys(sigs, None)
    for band in range(bands):
        keys[band + 1] = _row_keys(sigs[:, band * rows:(band + 1) * rows], None)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    blank = np.fromiter((not t.strip() for t in texts), dtype=bool, count=len(texts))
    return keys, counts, lengths, blank, sigs.astype(np.uint8)  # low bytes: the similarity sketch


def _band_keys(texts: Sequence[str], shingler: Shingler, num_perm: int, seed: int, bands: int, rows: int,
               num_proc: int, folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write the whole-signature key and each band's keys, band-major, to ``folder/band-K.u64``;
    return (shingle counts, lengths, blank) per text. Nothing per row but those stays in memory;
    the texts are read by forked workers (:func:`meddata.filters.forked.map_row_ranges`)."""
    from meddata.filters.forked import map_row_ranges

    n = len(texts)
    counts = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    blank = np.zeros(n, dtype=bool)
    work = functools.partial(_band_keys_chunk, shingler=shingler, num_perm=num_perm, seed=seed, bands=bands, rows=rows)
    files = [open(os.path.join(folder, f"band-{k}.u64"), "wb") for k in range(bands + 1)]  # noqa: SIM115
    files.append(open(os.path.join(folder, SKETCH), "wb"))  # noqa: SIM115
    try:
        for a, b, (keys, c, ln, bl, sketch) in map_row_ranges(texts, work, num_proc, CHUNK_ROWS):
            counts[a:b], lengths[a:b], blank[a:b] = c, ln, bl
            for k, fh in enumerate(files[:-1]):
                fh.write(keys[k].tobytes())
            files[-1].write(np.ascontiguousarray(sketch).tobytes())
    finally:
        for fh in files:
            fh.close()
    return counts, lengths, blank


#: Candidate pairs per verification task: bounds the texts and shingles one task holds.
VERIFY_BLOCK = 20_000
#: The low byte of every signature slot, row-major (``n x num_perm`` uint8), for estimates.
SKETCH = "sketch.u8"
#: Candidates whose estimated similarity lies more than this many standard deviations below
#: the threshold are rejected without an exact check: a pair exactly at the threshold is lost
#: that way with probability 0.13% (normal approximation of the binomial over num_perm slots).
#: Every other candidate gets an exact Jaccard check, so no pair below the threshold is joined.
VERIFY_SIGMAS = 3.0


def _verified(texts: Sequence[str], pairs: np.ndarray, shingler: Shingler, threshold: float,
              sketch_path: str, num_perm: int) -> np.ndarray:
    """Which ``pairs`` have exact Jaccard >= ``threshold`` (run by a worker on one block).

    The signature estimate comes first, from one byte per slot (unequal slots agree on it with
    probability 1/256, which raises the estimate by under 0.004): templated text (the same
    question with different answers) makes many LSH candidates far below the threshold, and
    they cost a byte compare here instead of shingling both texts."""
    sketch = np.memmap(sketch_path, dtype=np.uint8, mode="r").reshape(-1, num_perm)
    estimate = np.count_nonzero(sketch[pairs[:, 0]] == sketch[pairs[:, 1]], axis=1) / num_perm
    margin = VERIFY_SIGMAS * math.sqrt(threshold * (1 - threshold) / num_perm)
    ok = estimate >= threshold - margin
    if ok.any():
        ok[ok] = exact_similarity(texts, pairs[ok], shingler) >= threshold
    return ok


def _components(n: int, *edge_sets: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of components, component label per node) of the graph with these edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([e.reshape(-1, 2) for e in edge_sets]) if edge_sets else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)


def near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    shingler: Shingler | None = None,
    num_perm: int = 128,
    seed: int = 1,
    verify: bool = True,
    min_recall: float = 0.995,
    scope: Sequence[str | None] | None = None,
    num_proc: int = 1,
    workdir: str | os.PathLike | None = None,
    executor: str = "local",
) -> NearDupResult:
    """Cluster texts whose shingle sets have Jaccard similarity >= ``threshold``.

    ``verify=True`` (default): LSH tuned so a pair at the threshold becomes a candidate with
    probability >= ``min_recall``; every candidate is checked with exact Jaccard on its shingle
    sets (an edge needs Jaccard >= threshold), in blocks of ``VERIFY_BLOCK`` pairs run by the
    same workers, except candidates whose signature estimate is more than ``VERIFY_SIGMAS``
    standard deviations below the threshold (rejected from a one-byte-per-slot sketch). ``verify=False``: every LSH candidate pair
    (bands and rows from datasketch's optimiser) is an edge, as in the plain datasketch recipe.
    ``scope``: texts with different scope values are never compared (e.g. patient ids).
    ``executor="ray"``: the same clusters as Ray tasks on the cluster this process is connected
    to (:func:`_near_duplicates_ray`); ``num_proc`` is then the cluster's.

    Memory stays flat in the number of texts: workers (``num_proc`` forked processes, reading
    the texts themselves) reduce each signature to one 64-bit key per band at once; the keys
    go band-major to files under ``workdir`` (a temporary folder by default) and are read one
    band at a time. Only per-text counts and lengths, and the candidate pairs, stay in memory.
    """
    import tempfile

    shingler = shingler or Shingler()
    if executor == "ray":
        return _near_duplicates_ray(texts, threshold, shingler, num_perm, seed, verify, min_recall, scope, workdir)
    n = len(texts)
    scope_keys = _scope_keys(scope, n)
    bands, rows = lsh_params(threshold, num_perm, min_recall if verify else None)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="minhash-") as folder:
        counts, lengths, blank = _band_keys(texts, shingler, num_perm, seed, bands, rows, num_proc, folder)

        def band(k: int, idx: np.ndarray) -> np.ndarray:
            keys = np.fromfile(os.path.join(folder, f"band-{k}.u64"), dtype=U64)[idx]
            return keys if scope_keys is None else fmix64(keys ^ scope_keys[idx])

        has = np.flatnonzero(counts > 0)
        # Identical signatures (same scope) are the same set: join them directly, band only one.
        identical = has[_chain_pairs(band(0, has))]
        n_joined, labels = _components(n, identical)
        _, first = np.unique(labels[has], return_index=True)
        reps = np.sort(has[first])
        # Band by band: a band's candidate pairs that are not connected yet are screened and
        # verified by the workers, and the accepted ones join the components before the next
        # band. Only one band's candidates are in memory at a time (templated text makes
        # millions of them: the same question with other answers), never all of them.
        if verify:
            from meddata.filters.forked import map_with_source

            check = functools.partial(_verified, shingler=shingler, threshold=threshold,
                                      sketch_path=os.path.join(folder, SKETCH), num_perm=num_perm)
        accepted = [np.zeros((0, 2), dtype=np.int64)]
        n_candidates = checked = 0
        for k in range(1, bands + 1):
            keys = band(k, reps)
            new = reps[_all_pairs(*_groups(keys)) if verify else _chain_pairs(keys)]
            del keys
            n_candidates += len(new)
            if verify and len(new):
                new = new[labels[new[:, 0]] != labels[new[:, 1]]]  # already joined: nothing to learn
                new = _unique_pairs(new, n)
                checked += len(new)
                blocks = [new[j:j + VERIFY_BLOCK] for j in range(0, len(new), VERIFY_BLOCK)]
                if blocks:
                    new = new[np.concatenate(list(map_with_source(texts, check, blocks, num_proc)))]
            if len(new):
                accepted.append(new)
                _, labels = _components(n, identical, *accepted)
        pairs = np.concatenate(accepted)
    n_final, labels = _components(n, identical, pairs)
    return NearDupResult(labels=labels, bands=bands, rows=rows, candidate_pairs=n_candidates,
                         identical_pairs=len(identical), verified_pairs=checked, accepted_pairs=n_joined - n_final,
                         no_shingles=n - len(has), lengths=lengths, blank=blank)


def _scope_keys(scope: Sequence[str | None] | None, n: int) -> np.ndarray | None:
    if scope is None:
        return None
    if len(scope) != n:
        raise ValueError(f"got {len(scope)} scope values for {n} texts")
    codes: dict[str | None, int] = {}
    ids = np.fromiter((codes.setdefault(s, len(codes)) for s in scope), dtype=np.int64, count=n)
    return fmix64(ids.astype(U64) + U64(0x632BE59BD9B4E019))


# -- on a Ray cluster ------------------------------------------------------------------------

def scope_hashes(values: Sequence[str | None]) -> np.ndarray:
    """A 64-bit key per scope value, computed from the value alone (each Ray task hashes its
    own rows' values; :func:`_scope_keys` numbers values in order of appearance instead,
    which needs them all in one place). Equal values get equal keys; ``None`` is a value."""
    import hashlib

    raw = np.fromiter((int.from_bytes(hashlib.blake2b(b"\x00" if v is None else b"\x01" + str(v).encode(),
                                                      digest_size=8).digest(), "little") for v in values),
                      dtype=U64, count=len(values))
    return fmix64(raw + U64(0x632BE59BD9B4E019))


def _band_records_task(texts: Sequence[str], start: int, stop: int, scope: Sequence[str | None] | None,
                       shingler: Shingler, num_perm: int, seed: int, bands: int, rows: int, sketch_path: str):
    """A Ray task's rows: (has shingles, length, blank) for the caller, the similarity sketch
    written to its rows' place in ``sketch_path``, and per text with shingles one record per
    band (band 0: the whole signature) ``(band, key, key0, row)``, partitioned by key."""
    from meddata.filters.forked import sub_ranges

    from meddata.engine.ray_ops import Out

    info, records = [], []
    with open(sketch_path, "r+b") as sketch_file:
        for a, b in sub_ranges(start, stop, CHUNK_ROWS):
            keys, counts, lengths, blank, sketch = _band_keys_chunk(texts[a:b], shingler, num_perm, seed, bands, rows)
            sketch_file.seek(a * num_perm)
            sketch_file.write(np.ascontiguousarray(sketch).tobytes())
            if scope is not None:
                keys = fmix64(keys ^ scope_hashes(scope[a:b])[None, :])
            has = np.flatnonzero(counts > 0)
            info.append((counts > 0, lengths, blank))
            records.append((keys[:, has], has + a))
    keys = np.concatenate([k for k, _ in records], axis=1)
    row = np.concatenate([r for _, r in records])
    band = np.repeat(np.arange(bands + 1, dtype=np.uint16), len(row))
    return Out(info=tuple(np.concatenate([part[k] for part in info]) for k in range(3)), keys=keys.ravel(),
               records={"band": band, "key": keys.ravel(), "key0": np.tile(keys[0], bands + 1),
                        "row": np.tile(row, bands + 1)})


def _band_groups_task(records: dict[str, np.ndarray], n: int, verify: bool):
    """One partition of band records (all records of one ``(band, key)`` are in one partition).

    Band 0 (the whole signature): identical signatures, joined by chain edges (left in the
    object store). Other bands: the texts sharing a band key, one per identical signature
    (its first row, as :func:`near_duplicates` does with ``reps``); with ``verify`` every pair
    of them, partitioned by pair for verification, otherwise chain edges. Info: (candidate
    pairs, identical pairs) counted as :func:`near_duplicates` counts them."""
    from meddata.engine.ray_ops import Out

    order = np.lexsort((records["row"], records["key0"], records["key"], records["band"]))
    band, key, key0, row = (records[c][order] for c in ("band", "key", "key0", "row"))
    zero = band == 0
    k, r = key[zero], row[zero]
    same = np.flatnonzero(k[1:] == k[:-1])
    identical = np.stack((r[same], r[same + 1]), axis=1)
    band, key, key0, row = band[~zero], key[~zero], key0[~zero], row[~zero]
    first = np.ones(len(row), dtype=bool)
    first[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (key0[1:] != key0[:-1])
    band, key, row = band[first], key[first], row[first]  # one text per identical signature
    order = np.lexsort((row, key, band))
    band, key, row = band[order], key[order], row[order]
    if not verify:
        same = np.flatnonzero((band[1:] == band[:-1]) & (key[1:] == key[:-1]))
        chain = np.stack((row[same], row[same + 1]), axis=1)
        return Out(info=(len(chain), len(identical)), data=np.concatenate((identical, chain)))
    bounds = np.flatnonzero(np.concatenate(([True], (band[1:] != band[:-1]) | (key[1:] != key[:-1]), [True])))
    starts, sizes = bounds[:-1], np.diff(bounds)
    many = sizes >= 2
    pairs = _all_pairs(row, starts[many], sizes[many])
    return Out(info=(len(pairs), len(identical)), data=identical,
               keys=fmix64(pairs[:, 0].astype(U64) * U64(n) + pairs[:, 1].astype(U64)),
               records={"a": pairs[:, 0], "b": pairs[:, 1]})


def _verify_task(records: dict[str, np.ndarray], texts: Sequence[str], n: int, shingler: Shingler,
                 threshold: float, sketch_path: str, num_perm: int):
    """One partition of candidate pairs: each distinct pair once, screened and checked with
    exact Jaccard (:func:`_verified`, reading its own texts); the accepted pairs stay in the
    object store as edges. Info: the pairs checked."""
    from meddata.engine.ray_ops import Out

    pairs = _unique_pairs(np.stack((records["a"], records["b"]), axis=1), n)
    ok = [_verified(texts, pairs[j:j + VERIFY_BLOCK], shingler, threshold, sketch_path, num_perm)
          for j in range(0, len(pairs), VERIFY_BLOCK)]
    return Out(info=len(pairs), data=pairs[np.concatenate(ok)] if ok else pairs)


def _near_duplicates_ray(texts: Sequence[str], threshold: float, shingler: Shingler, num_perm: int, seed: int,
                         verify: bool, min_recall: float, scope: Sequence[str | None] | None,
                         workdir: str | os.PathLike | None) -> NearDupResult:
    """:func:`near_duplicates` (``executor="ray"``) as Ray tasks on the cluster this process is connected to: the
    same clusters, lengths and counts, except ``verified_pairs`` (see :class:`NearDupResult`).

    ``texts`` (and ``scope``) must pickle small and open their rows where they are unpickled
    (:class:`meddata.filters.forked.LazyContents` over a memory-mapped dataset does). Steps:
    signature tasks over row ranges write the one-byte sketch to ``workdir`` (a folder every
    node sees) and partition ``(band, key)`` records; band-key groupby tasks emit the
    identical-signature edges and the candidate pairs, partitioned by pair; verification
    tasks check each distinct pair once; connected components by min-label propagation
    (:func:`meddata.engine.ray_ops.components`). The caller holds per-row arrays only
    (lengths, blankness, labels), never texts or signatures."""
    import tempfile

    from meddata.engine import ray_ops

    n = len(texts)
    if scope is not None and len(scope) != n:
        raise ValueError(f"got {len(scope)} scope values for {n} texts")
    bands, rows = lsh_params(threshold, num_perm, min_recall if verify else None)
    partitions = ray_ops.default_partitions()
    has = np.zeros(n, dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    blank = np.zeros(n, dtype=bool)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="minhash-ray-") as folder:
        sketch_path = os.path.join(folder, SKETCH)
        with open(sketch_path, "wb") as fh:
            fh.truncate(n * num_perm)
        mapped = ray_ops.map_ranges(_band_records_task, texts, n, partitions=partitions, desc="minhash signatures",
                                    args=(scope, shingler, num_perm, seed, bands, rows, sketch_path),
                                    record_bytes=26 * (bands + 1))  # band, key, key0, row per band
        for (a, b), (h, ln, bl) in zip(mapped.spans, mapped.infos):
            has[a:b], lengths[a:b], blank[a:b] = h, ln, bl
        grouped = ray_ops.reduce_partitions(_band_groups_task, mapped.parts, partitions=partitions if verify else 0,
                                            args=(n, verify), desc="minhash band groups")
        del mapped
        n_candidates = sum(info[0] for info in grouped.infos)
        n_identical = sum(info[1] for info in grouped.infos)
        edges, checked = list(grouped.data), 0
        if verify:
            verified = ray_ops.reduce_partitions(_verify_task, grouped.parts, desc="minhash verify",
                                                 args=(texts, n, shingler, threshold, sketch_path, num_perm))
            checked = sum(verified.infos)
            edges += verified.data
        del grouped
        found = ray_ops.components(n, edges, desc="minhash components")
    # identical edges join distinct texts one by one (chains), so they alone leave n - n_identical components
    return NearDupResult(labels=found.labels, bands=bands, rows=rows, candidate_pairs=n_candidates,
                         identical_pairs=n_identical, verified_pairs=checked,
                         accepted_pairs=n - n_identical - found.count, no_shingles=n - int(has.sum()),
                         lengths=lengths, blank=blank)
