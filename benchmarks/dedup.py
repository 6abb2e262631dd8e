"""Near-duplicate filtering at scale: ``dedup(method="rougeL")`` on 100,000 synthetic questions.

    python benchmarks/dedup.py                       # 100k questions, 3,000-question sample
    python benchmarks/dedup.py --n 20000 --sample 1000

The questions come from mathlm's own generators (all domains, difficulties 1-3, unverified):
templated text, so most of them are near-duplicates of one another, which is the workload
self-instruct filtering faces. Semantics (self-instruct): a question is dropped when its
ROUGE-L F1 with any already kept question is >= threshold.

Baseline: the exhaustive scan (``dedup_exhaustive``: every question against every kept one,
bit-parallel LCS) on a random sample of ``--sample`` questions, run in the same process; the
indexed path runs on the same sample and must make exactly the same decisions. Jaccard (exact,
same index) and MinHash-LSH (approximate) are timed on the sample for comparison.

Target (issue 6): 100k questions in <= 60 s on 2 cores, decisions equal to the exhaustive
scan on the sample. Writes JSON (default benchmarks/results/dedup.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from mathlm.data import DOMAINS, dedup, dedup_exhaustive


def synthetic_questions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = list(DOMAINS)
    out = []
    start = time.perf_counter()
    for i in range(n):
        out.append(DOMAINS[names[rng.randrange(len(names))]](rng, rng.randint(1, 3)).question)
        if (i + 1) % 25000 == 0:
            el = time.perf_counter() - start
            print(f"[questions] {i + 1}/{n} ({(i + 1) / el:,.0f}/s, ETA {(n - i - 1) / ((i + 1) / el):.0f}s)", file=sys.stderr)
    return out


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="questions for the indexed ROUGE-L run")
    ap.add_argument("--sample", type=int, default=3000, help="questions for the exhaustive comparison")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-s", type=float, default=60.0)
    ap.add_argument("--out", default="benchmarks/results/dedup.json")
    args = ap.parse_args()

    questions, gen_s = timed(synthetic_questions, args.n, args.seed)
    sample = random.Random(args.seed + 1).sample(questions, min(args.sample, len(questions)))
    t = args.threshold

    kept_all, full_s = timed(dedup, questions, "rougeL", t, progress=True)
    kept_idx, idx_s = timed(dedup, sample, "rougeL", t)
    kept_exh, exh_s = timed(dedup_exhaustive, sample, "rougeL", t)
    jac_idx, jac_s = timed(dedup, sample, "jaccard", t)
    jac_exh, jac_exh_s = timed(dedup_exhaustive, sample, "jaccard", t)
    mh, mh_s = timed(dedup, sample, "minhash", t)

    agree = kept_idx == kept_exh
    differ = len(set(kept_idx) ^ set(kept_exh))
    # (method, texts, seconds, kept, baseline seconds on the same texts, decisions)
    rows = [
        ("rougeL exhaustive (baseline)", len(sample), exh_s, len(kept_exh), exh_s, "-"),
        ("rougeL indexed", len(sample), idx_s, len(kept_idx), exh_s, "equal" if agree else f"{differ} differ"),
        ("jaccard exhaustive (baseline)", len(sample), jac_exh_s, len(jac_exh), jac_exh_s, "-"),
        ("jaccard indexed", len(sample), jac_s, len(jac_idx), jac_exh_s, "equal" if jac_idx == jac_exh else "DIFFER"),
        ("minhash LSH (approximate)", len(sample), mh_s, len(mh), jac_exh_s,
         f"{len(set(mh) ^ set(jac_exh))} differ from jaccard"),
        ("rougeL indexed, all", len(questions), full_s, len(kept_all), None, "-"),
    ]
    print(f"\ndedup, threshold {t}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"{'method':32} {'texts':>8} {'seconds':>9} {'texts/s':>10} {'speed-up':>9} {'kept':>7}  decisions")
    for name, n, sec, kept, base, note in rows:
        speedup = f"{base / sec:8.1f}x" if base else "        -"
        print(f"{name:32} {n:8d} {sec:9.2f} {n / sec:10,.0f} {speedup} {kept:7d}  {note}")
    ok = agree and full_s <= args.target_s
    print(f"\ntarget: {args.n:,} questions in <= {args.target_s:.0f} s with decisions equal to the exhaustive scan: "
          f"{'MET' if ok else 'NOT MET'} ({full_s:.1f} s, sample decisions {'equal' if agree else 'differ'})")

    result = {
        "threshold": t, "n": len(questions), "sample": len(sample), "cpus": os.cpu_count(),
        "platform": platform.platform(), "question_generation_s": gen_s,
        "rougeL_indexed_all_s": full_s, "rougeL_indexed_all_kept": len(kept_all),
        "rougeL_indexed_sample_s": idx_s, "rougeL_exhaustive_sample_s": exh_s, "sample_kept": len(kept_exh),
        "sample_decisions_equal": agree, "sample_decisions_differing": differ,
        "jaccard_indexed_sample_s": jac_s, "jaccard_exhaustive_sample_s": jac_exh_s,
        "jaccard_decisions_equal": jac_idx == jac_exh, "minhash_sample_s": mh_s,
        "minhash_differ_from_jaccard": len(set(mh) ^ set(jac_exh)), "target_s": args.target_s, "target_met": ok,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
