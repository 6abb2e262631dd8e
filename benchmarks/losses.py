"""Chunked SFT cross-entropy (mathlm.losses.sft_loss) against the naive float32 upcast.

    python benchmarks/losses.py                     # CPU defaults (two shapes, ~1 min)
    python benchmarks/losses.py --shapes 8x4096x128256 --device cuda

Baseline, run in the same invocation: F.cross_entropy(logits.float()[mask], labels[mask]), the
common way to take a token loss of bf16 logits; it builds the full float32 copy, its
log-softmax and a float32 gradient. mathlm's sft_loss works chunk by chunk (default chunk
~2**26 / V token positions, plus an explicit small chunk for comparison). Both run forward +
backward on the same bf16 logits (grad in bf16 for both: the leaf is bf16).

Each (shape, method) runs in a fresh subprocess so memory figures do not leak between cases:
- time: best of --reps forward + backward passes;
- peak: the memory high-water mark during those passes minus the mark after the inputs exist
  (CPU: ru_maxrss of the process; CUDA: torch.cuda.max_memory_allocated). The bf16 logits and
  their bf16 gradient are the same for every method.
Writes JSON (default benchmarks/results/losses.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("naive", "chunked-default", "chunked-128")


def run_case(shape: str, method: str, device: str, reps: int) -> dict:
    """Runs in the child process: one method on one shape."""
    import torch
    import torch.nn.functional as F

    from mathlm.losses import sft_loss

    B, T, V = (int(v) for v in shape.split("x"))
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    logits = torch.randn(B, T, V, device=dev, generator=g, dtype=torch.bfloat16).requires_grad_()
    labels = torch.randint(0, V, (B, T), device=dev, generator=g)
    mask = torch.rand(B, T, device=dev, generator=g) > 0.2

    def step():
        if method == "naive":
            loss = F.cross_entropy(logits.float()[mask], labels[mask])
        else:
            loss = sft_loss(logits, labels, mask, chunk_size=None if method == "chunked-default" else 128)[0]
        loss.backward()
        logits.grad = None
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times, loss = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"shape": shape, "method": method, "seconds": min(times), "peak_extra_bytes": peak,
            "loss": float(loss)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["4x256x32000", "1x1024x128256"], help="BxTxV")
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/losses.json")
    p.add_argument("--case", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1], args.device, args.reps)))
        return

    rows = []
    cases = [(s, m) for s in args.shapes for m in METHODS]
    started = time.perf_counter()
    for i, (shape, method) in enumerate(cases, 1):
        out = subprocess.run([sys.executable, __file__, "--case", shape, method, "--device", args.device,
                              "--reps", str(args.reps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        elapsed = time.perf_counter() - started
        print(f"[{i}/{len(cases)}] {shape} {method}: {rows[-1]['seconds'] * 1e3:.0f} ms "
              f"(elapsed {elapsed:.0f} s, ETA {elapsed / i * (len(cases) - i):.0f} s)", file=sys.stderr)

    print(f"\nsft_loss forward + backward, bf16 logits, device {args.device} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores)")
    print(f"{'B x T x V':>16} {'method':>16} {'ms':>9} {'time/naive':>11} {'peak MiB':>9} {'peak/naive':>11} {'loss':>9}")
    for shape in args.shapes:
        naive = next(r for r in rows if r["shape"] == shape and r["method"] == "naive")
        for r in (r for r in rows if r["shape"] == shape):
            r["time_ratio"] = r["seconds"] / naive["seconds"]
            r["peak_ratio"] = r["peak_extra_bytes"] / max(naive["peak_extra_bytes"], 1)
            print(f"{shape:>16} {r['method']:>16} {r['seconds'] * 1e3:9.1f} {r['time_ratio']:11.2f} "
                  f"{r['peak_extra_bytes'] / 2**20:9.0f} {r['peak_ratio']:11.2f} {r['loss']:9.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": args.device, "cpu_count": os.cpu_count(),
                                          "torch_threads_default": True, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
