"""Near-duplicate detection: meddata's MinHash core against the plain datasketch recipe.

Builds one real-text set from ../shared/data (MedQuAD answers, MTSamples transcriptions,
PubMedQA contexts, cut into paragraphs), removes the paragraphs that are already near each
other, plants near-duplicates of some of them (light word edits plus whitespace, case and
punctuation noise, each with exact Jaccard >= 0.8 to its original on normalised word
5-grams), then runs in one process, on the same texts:

* the plain recipe: word 5-grams of ``text.lower().split()``, ``MinHash.bulk``,
  ``MinHashLSH(threshold=0.8, num_perm=128)``, insert all, query all, union the results;
* meddata: :func:`meddata.filters.minhash.near_duplicates` (word 5-grams, 128 permutations,
  threshold 0.8, exact verification), single process and with ``--num-proc`` workers.

It prints docs/s for each, the ratio, the recall of the planted pairs (both texts in one
cluster) and how many clusters hold two originals (a merge of distinct documents).

    .venv/bin/python benchmarks/dedup.py                 # 50,000 documents
    .venv/bin/python benchmarks/dedup.py --n 10000       # quicker
    .venv/bin/python benchmarks/dedup.py --write-fixture tests/data/dedup/planted_neardup.jsonl.gz --n 2500

``--write-fixture`` writes the test set of tests/filters/test_dedup_minhash.py instead of timing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WORD = re.compile(r"\w+")
HEADER = re.compile(r"\s*,?\s*(?=\b[A-Z][A-Z /&()-]{3,}:)")  # MTSamples inline section headers


# -- the corpus ------------------------------------------------------------------------------

def _paragraphs(pieces: Iterable[str], min_words: int, max_words: int) -> Iterator[str]:
    """Join consecutive pieces until a paragraph has at least ``min_words`` words."""
    buf: list[str] = []
    n = 0
    for piece in pieces:
        words = piece.split()
        if not words:
            continue
        buf.append(" ".join(words))
        n += len(words)
        if n >= min_words:
            yield " ".join(" ".join(buf).split()[:max_words])
            buf, n = [], 0
    if n >= 20:
        yield " ".join(" ".join(buf).split()[:max_words])


def real_paragraphs(shared: Path, min_words: int = 30, max_words: int = 400) -> list[tuple[str, str]]:
    """(source, paragraph) from MedQuAD answers, MTSamples transcriptions and PubMedQA
    contexts; the same normalised paragraph only once."""
    out: list[tuple[str, str]] = []
    with (shared / "medquad" / "medquad.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            answer = json.loads(line).get("answer") or ""
            out += [("medquad", p) for p in _paragraphs(answer.split("\n"), min_words, max_words)]
    seen: set[str] = set()
    with (shared / "mtsamples" / "mtsamples.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            note = json.loads(line).get("transcription")
            if note and note not in seen:
                seen.add(note)
                out += [("mtsamples", p) for p in _paragraphs(HEADER.split(note), min_words, max_words)]
    pubmedqa = json.loads((shared / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    out += [("pubmedqa", c) for item in pubmedqa.values() for c in item["CONTEXTS"] if len(c.split()) >= 20]
    unique: dict[str, tuple[str, str]] = {}
    for src, text in out:
        unique.setdefault(" ".join(WORD.findall(text.lower())), (src, text))
    return list(unique.values())


def shingle_set(text: str, n: int = 5) -> set[str]:
    """Ground truth shingles, independent of meddata: word n-grams of the \\w+ tokens of the
    lower-cased text (what meddata's default normalisation compares)."""
    words = WORD.findall(text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def prune_similar(texts: list[str], max_jaccard: float) -> list[int]:
    """Indices of a subset of texts in which no two have exact Jaccard >= ``max_jaccard``
    (all pairs, by a sparse text-by-shingle product; a later text loses to an earlier one)."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    sizes = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        s = shingle_set(t)
        sizes[i] = len(s)
        cols += [vocab.setdefault(g, len(vocab)) for g in s]
        rows += [i] * len(s)
    x = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    inter = (x @ x.T).tocoo()
    upper = inter.row < inter.col
    r, c, v = inter.row[upper], inter.col[upper], inter.data[upper]
    close = v / (sizes[r] + sizes[c] - v) >= max_jaccard
    dropped: set[int] = set()
    for a, b in sorted(zip(r[close].tolist(), c[close].tolist())):
        if a not in dropped:
            dropped.add(b)
    return [i for i in range(len(texts)) if i not in dropped]


def _noise(words: list[str], rng: random.Random) -> str:
    """Whitespace, case and punctuation noise that leaves the \\w+ tokens unchanged."""
    words = list(words)
    kind = rng.random()
    if kind < 0.3:
        words = [w.lower() for w in words]
    elif kind < 0.5:
        words = [w.upper() if rng.random() < 0.1 else w for w in words]
    elif kind < 0.7:
        words = [w.capitalize() if rng.random() < 0.15 else w for w in words]
    out = []
    for w in words:
        r = rng.random()
        if r < 0.02 and w[-1:] in ",.;:":
            w = w[:-1]  # drop trailing punctuation
        elif r < 0.04 and w[-1:].isalnum():
            w += rng.choice([",", ";", " -", "."])
        out.append(w)
    seps = [rng.choice(["  ", "\n", "\t", " \n "]) if rng.random() < 0.06 else " " for _ in out]
    return "".join(w + s for w, s in zip(out, seps)).strip() + rng.choice(["", " ", "\n"])


def plant(text: str, rng: random.Random, vocabulary: list[str], threshold: float = 0.8) -> str | None:
    """A near-duplicate of ``text``: a few word edits (substitute, delete, insert, swap) and
    noise, with exact Jaccard >= threshold to the original; None if no such edit was found."""
    words = text.split()
    original = shingle_set(text)
    most = max(1, len(words) // 25)
    for _ in range(6):
        edited = list(words)
        for _ in range(rng.randint(1, most)):
            op, i = rng.random(), rng.randrange(len(edited))
            if op < 0.4:
                edited[i] = rng.choice(vocabulary)
            elif op < 0.6 and len(edited) > 5:
                del edited[i]
            elif op < 0.8:
                edited.insert(i, rng.choice(vocabulary))
            elif i + 1 < len(edited):
                edited[i], edited[i + 1] = edited[i + 1], edited[i]
        dup = _noise(edited, rng)
        if jaccard(original, shingle_set(dup)) >= threshold and dup != text:
            return dup
        most = max(1, most // 2)
    return None


def planted_set(paragraphs: list[tuple[str, str]], n: int, seed: int, max_jaccard: float,
                planted_share: float = 0.3) -> list[dict]:
    """``n`` documents ``{id, text, family, kind}``: pruned originals plus planted
    near-duplicates (kind "planted", same family as their original), shuffled."""
    rng = random.Random(seed)
    rng.shuffle(paragraphs)
    pool = paragraphs[: int(n * 1.4)]
    keep = prune_similar([t for _, t in pool], max_jaccard)
    originals = [pool[i] for i in keep][: max(1, n - int(n * planted_share))]
    n_planted = n - len(originals)
    vocabulary = [w for _, t in originals[:2000] for w in t.split() if w.isalpha()]
    docs = [{"id": f"o{i}", "text": t, "family": i, "kind": "original", "source": s}
            for i, (s, t) in enumerate(originals)]
    planted = 0
    order = list(range(len(originals)))
    while planted < n_planted:
        rng.shuffle(order)
        for fam in order:
            if planted >= n_planted:
                break
            dup = plant(originals[fam][1], rng, vocabulary)
            if dup is not None:
                docs.append({"id": f"p{planted}", "text": dup, "family": fam, "kind": "planted",
                             "source": originals[fam][0]})
                planted += 1
    rng.shuffle(docs)
    return docs


# -- the two systems -------------------------------------------------------------------------

def plain_datasketch(texts: list[str], tokens: str = "split", threshold: float = 0.8,
                     num_perm: int = 128) -> np.ndarray:
    """The usual recipe, with union-find over the query results; returns cluster labels.
    ``tokens="split"``: ``text.lower().split()``; ``"words"``: the \\w+ tokens meddata uses."""
    from datasketch import MinHash, MinHashLSH
    from meddata.filters.minhash import UnionFind

    tokenize = str.split if tokens == "split" else WORD.findall
    sets = [[" ".join(w[i:i + 5]).encode("utf-8") for i in range(max(1, len(w) - 4))]
            for w in (tokenize(t.lower()) for t in texts)]
    minhashes = MinHash.bulk(sets, num_perm=num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            session.insert(i, m)
    uf = UnionFind(len(texts))
    for i, m in enumerate(minhashes):
        for j in lsh.query(m):
            uf.union(i, j)
    return uf.labels()


def meddata_near_dups(texts: list[str], num_proc: int, threshold: float = 0.8, num_perm: int = 128):
    from meddata.filters.minhash import Shingler, near_duplicates

    return near_duplicates(texts, threshold=threshold, shingler=Shingler(ngram=5, unit="word"),
                           num_perm=num_perm, num_proc=num_proc)


def score(labels: np.ndarray, docs: list[dict]) -> tuple[float, int]:
    """(recall of planted pairs, clusters holding two or more originals)."""
    first = {}
    for i, d in enumerate(docs):
        if d["kind"] == "original":
            first[d["family"]] = i
    planted = [(first[d["family"]], i) for i, d in enumerate(docs) if d["kind"] == "planted"]
    found = sum(labels[a] == labels[b] for a, b in planted)
    originals_per_cluster: dict[int, int] = {}
    for i, d in enumerate(docs):
        if d["kind"] == "original":
            originals_per_cluster[int(labels[i])] = originals_per_cluster.get(int(labels[i]), 0) + 1
    merged = sum(1 for c in originals_per_cluster.values() if c > 1)
    return found / max(1, len(planted)), merged


def _timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="documents in the set (default 50,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-proc", type=int, default=2, help="workers for the multi-process meddata run")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--max-jaccard", type=float, default=0.8,
                    help="originals are pruned until no two reach this Jaccard (default 0.8)")
    ap.add_argument("--min-words", type=int, default=30, help="shortest paragraph in words (default 30)")
    ap.add_argument("--max-words", type=int, default=400, help="paragraphs are cut after this many words")
    ap.add_argument("--planted-share", type=float, default=0.3, help="share of planted documents (default 0.3)")
    ap.add_argument("--write-fixture", type=Path, help="write the set as JSONL(.gz) and stop")
    args = ap.parse_args(argv)
    if not (args.shared / "medquad").exists():
        print(f"benchmarks/dedup.py: {args.shared} is absent (MedQuAD, MTSamples, PubMedQA are needed); "
              "nothing measured", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    paragraphs = real_paragraphs(args.shared, args.min_words, args.max_words)
    docs = planted_set(paragraphs, args.n, args.seed, args.max_jaccard, args.planted_share)
    texts = [d["text"] for d in docs]
    n_planted = sum(d["kind"] == "planted" for d in docs)
    print(f"set: {len(docs):,} documents ({len(docs) - n_planted:,} real paragraphs, pairwise Jaccard < "
          f"{args.max_jaccard}; {n_planted:,} planted near-duplicates, Jaccard >= 0.8), "
          f"{sum(len(t) for t in texts) / 1e6:.1f} M characters; built in {time.perf_counter() - t0:.0f}s")
    if args.write_fixture:
        opener = gzip.open if args.write_fixture.suffix == ".gz" else open
        args.write_fixture.parent.mkdir(parents=True, exist_ok=True)
        by_family = sorted(docs, key=lambda d: (d["family"], d["kind"] != "original"))  # compresses well
        with opener(args.write_fixture, "wt", encoding="utf-8") as fh:
            for d in by_family:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        print(f"wrote {args.write_fixture}")
        return 0

    meddata_near_dups(texts[:200], 1)  # import datasketch/scipy and warm caches outside the clock
    plain_labels, w_plain, c_plain = _timed(plain_datasketch, texts, "split")
    words_labels, w_words, c_words = _timed(plain_datasketch, texts, "words")
    one, w_one, c_one = _timed(meddata_near_dups, texts, 1)
    many, w_many, _ = _timed(meddata_near_dups, texts, args.num_proc)
    rows = [("plain datasketch, lower().split() tokens", plain_labels, w_plain, c_plain),
            ("plain datasketch, \\w+ tokens (as meddata)", words_labels, w_words, c_words),
            ("meddata minhash_dedup, 1 process", one.labels, w_one, c_one),
            (f"meddata minhash_dedup, {args.num_proc} processes", many.labels, w_many, None)]
    n = len(texts)
    print(f"{'system':<46} {'docs/s wall':>11} {'docs/s CPU':>10} {'recall':>7} {'merged originals':>16}")
    for name, labels, wall, cpu in rows:
        recall, merged = score(labels, docs)
        cpu_rate = f"{n / cpu:>10,.0f}" if cpu else f"{'-':>10}"
        print(f"{name:<46} {n / wall:>11,.0f} {cpu_rate} {recall:>7.4f} {merged:>16,}")
    print(f"meddata LSH: {one.bands} bands x {one.rows} rows; {one.candidate_pairs:,} candidate pairs, "
          f"{one.verified_pairs:,} checked with exact Jaccard, {one.accepted_pairs:,} edges")
    w_base, c_base = min(w_plain, w_words), min(c_plain, c_words)  # the faster baseline variant
    print(f"speed-up over the faster plain datasketch run: {w_base / w_one:.1f}x wall, {c_base / c_one:.1f}x CPU "
          f"(1 process); {w_base / w_many:.1f}x wall ({args.num_proc} processes)")
    print("(CPU time is this process only; it is the steadier measure on a shared machine. The "
          "multi-process row has wall time only.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
