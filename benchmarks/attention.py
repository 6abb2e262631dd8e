"""Attention kernels: throughput of mathlm's Triton flash attention against torch SDPA (flash and
cuDNN backends) and the pure-PyTorch reference path; block-sparse attention against dense flash.

    python benchmarks/attention.py                   # the full sweep on a GPU (~10-20 min with autotuning)
    python benchmarks/attention.py --quick           # head_dim 128, causal, a few lengths (~3 min)
    python benchmarks/attention.py --out results.json

FLOPs (as the Triton tutorial counts them): forward = 4 * B * H * Tq * Tk * D (two matmuls of 2
flops per multiply-add), halved when causal; backward = 2.5 x forward (2.0 for the gradients +
0.5 for recomputing the scores); forward+backward = 3.5 x forward. Block-sparse rows count the same
formula over the kept fraction of the blocks, and are judged on time: sparse / (density x dense).
Every configuration is first checked against the reference path (max abs error printed), then timed
with triton.testing.do_bench (median). A row that runs out of memory or fails is recorded as such
and the sweep goes on.

Without a GPU the script runs one tiny size of each kernel under the Triton interpreter, for
correctness only, and says so: interpreter timings mean nothing, so no table or JSON is produced
(unless --out is given, which records the correctness checks).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import mathlm.kernels as K  # noqa: E402
from mathlm.kernels import sparse_layouts as L  # noqa: E402

DEFAULT_OUT = Path(__file__).parent / "results" / "attention.json"


def flops_forward(B, H, Tq, Tk, D, causal):
    return 4.0 * B * H * Tq * Tk * D * (0.5 if causal else 1.0)


# ------------------------------------------------------------------------------ implementations


def sdpa_fn(backend_name: str):
    """torch SDPA restricted to one backend, on (B, T, H, D) tensors (transposed views, no copy)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def run(q, k, v, causal):
        with sdpa_kernel(backend):
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                enable_gqa=q.shape[2] != k.shape[2])
        return out.transpose(1, 2)

    return run


IMPLEMENTATIONS = {
    "mathlm-triton": lambda q, k, v, causal: K.flash_attention(q, k, v, causal=causal, backend="triton"),
    "sdpa-flash": sdpa_fn("FLASH_ATTENTION"),
    "sdpa-cudnn": sdpa_fn("CUDNN_ATTENTION"),
    "reference": lambda q, k, v, causal: K.flash_attention(q, k, v, causal=causal, backend="reference"),
}


def dense_error(fn, q, k, v, causal):
    """Max |fn - reference| on the first 1024 tokens of batch 0, heads 0-3 (float32 reference)."""
    sl = slice(0, min(q.shape[1], 1024))
    q, k, v = (x[:1, sl, :4].contiguous() for x in (q, k, v))
    ref = K.flash_attention(q.float(), k.float(), v.float(), causal=causal, backend="reference")
    return (fn(q, k, v, causal).float() - ref).abs().max().item()


def time_ms(fn) -> float:
    if not torch.cuda.is_available():  # --dry-run: wall clock of the interpreter, meaningless
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    import triton.testing

    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")


def measure(fn, q, k, v, causal):
    """Median ms of forward, backward and forward+backward."""
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v, causal)
    grad = torch.randn_like(out)
    torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)  # autotune the backward before timing
    fwd = time_ms(lambda: fn(q, k, v, causal))
    bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True))
    both = time_ms(lambda: torch.autograd.grad(fn(q, k, v, causal), (q, k, v), grad))
    return fwd, bwd, both


def failure(e: BaseException) -> str:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return "oom"
    return f"error: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"


def run_row(fn, q, k, v, causal, flops, error):
    """Check (error() -> max abs error, or None when too costly), then time; never raises."""
    try:
        err = error()
        fwd, bwd, both = measure(fn, q, k, v, causal)
        return {"max_abs_error": err, "fwd_ms": fwd, "bwd_ms": bwd, "fwd_bwd_ms": both,
                "fwd_tflops": flops / fwd * 1e-9, "bwd_tflops": 2.5 * flops / bwd * 1e-9,
                "fwd_bwd_tflops": 3.5 * flops / both * 1e-9}
    except Exception as e:  # noqa: BLE001 - one bad row must not end an unattended sweep
        return {"status": failure(e)}
    finally:
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ GPU sweeps


def progress(sweep: str, i: int, n: int, start: float, what: str) -> str:
    elapsed = time.time() - start
    return f"[{sweep} {i + 1}/{n}] {what} done, {elapsed:.0f}s elapsed, ETA {elapsed / (i + 1) * (n - i - 1):.0f}s"


def random_qkv(args, B, T, H, D, seed):
    g = torch.Generator(device=args.device).manual_seed(seed)
    return tuple(torch.randn(B, T, H, D, device=args.device, dtype=args.dtype, generator=g) for _ in range(3))


def dense_sweep(args, log):
    rows = []
    plan = [(D, T, causal) for D in args.head_dims for causal in args.causal for T in args.seqlens]
    start = time.time()
    for i, (D, T, causal) in enumerate(plan):
        B, H = args.batch, args.heads
        q, k, v = random_qkv(args, B, T, H, D, seed=i)
        flops = flops_forward(B, H, T, T, D, causal)
        for name in args.impls:
            if name == "reference" and T > args.reference_max_seqlen:
                continue
            fn = IMPLEMENTATIONS[name]
            result = run_row(fn, q, k, v, causal, flops, lambda: dense_error(fn, q, k, v, causal))
            rows.append({"kind": "dense", "impl": name, "B": B, "H": H, "T": T, "D": D, "causal": causal, **result})
        del q, k, v
        log(progress("dense", i, len(plan), start, f"D={D} T={T} causal={causal}"))
    return rows


def sparse_sweep(args, log):
    rows = []
    plan = [(T, d) for T in args.sparse_seqlens for d in args.densities]
    start = time.time()
    dense_ms = {}
    for i, (T, density) in enumerate(plan):
        B, H, D, bs = args.batch, args.heads, args.sparse_head_dim, args.block_size
        q, k, v = random_qkv(args, B, T, H, D, seed=i)
        if T not in dense_ms:
            flash = IMPLEMENTATIONS["mathlm-triton"]
            dense = run_row(flash, q, k, v, False, flops_forward(B, H, T, T, D, False),
                            lambda: dense_error(flash, q, k, v, False))
            dense_ms[T] = dense.get("fwd_bwd_ms")
            rows.append({"kind": "sparse", "impl": "mathlm-triton dense", "B": B, "H": H, "T": T, "D": D,
                         "density": 1.0, **dense})
        layout = L.random_layout(L.num_blocks_for(T, bs), density, seed=T, device=args.device)
        kept = L.layout_density(layout)

        def fn(q, k, v, causal, layout=layout):
            return K.block_sparse_attention(q, k, v, layout, bs, backend="triton")

        def error(layout=layout):  # heads 0-1 of batch 0 against the reference path, up to 8k tokens
            if T > 8192:
                return None
            small = [x[:1, :, :2].contiguous() for x in (q, k, v)]
            ref = K.block_sparse_attention(*(x.float() for x in small), layout, bs, backend="reference")
            return (fn(*small, False).float() - ref).abs().max().item()

        result = run_row(fn, q, k, v, False, kept * flops_forward(B, H, T, T, D, False), error)
        row = {"kind": "sparse", "impl": "mathlm-triton sparse", "B": B, "H": H, "T": T, "D": D,
               "block_size": bs, "density": kept, **result}
        if dense_ms.get(T) and "fwd_bwd_ms" in result:
            row["vs_density_x_dense"] = result["fwd_bwd_ms"] / (kept * dense_ms[T])
        rows.append(row)
        del q, k, v
        log(progress("sparse", i, len(plan), start, f"T={T} density={kept:.3f}"))
    return rows


def print_tables(rows, dtype_name):
    dense = [r for r in rows if r["kind"] == "dense"]
    base = {(r["T"], r["D"], r["causal"]): r for r in dense if r["impl"] == "sdpa-flash" and "fwd_ms" in r}
    print(f"\nDense attention, {dtype_name}: TFLOP/s, and speed relative to sdpa-flash (its time / this time)")
    print(f"{'impl':<14} {'D':>4} {'T':>6} {'causal':>6} {'fwd':>7} {'bwd':>7} {'f+b':>7} {'fwd x':>6} {'bwd x':>6} {'err':>8}")
    for r in dense:
        if "fwd_ms" not in r:
            print(f"{r['impl']:<14} {r['D']:>4} {r['T']:>6} {str(r['causal']):>6} {r['status']}")
            continue
        b = base.get((r["T"], r["D"], r["causal"]))
        fx = f"{b['fwd_ms'] / r['fwd_ms']:.2f}" if b else "-"
        bx = f"{b['bwd_ms'] / r['bwd_ms']:.2f}" if b else "-"
        print(f"{r['impl']:<14} {r['D']:>4} {r['T']:>6} {str(r['causal']):>6} {r['fwd_tflops']:>7.1f} "
              f"{r['bwd_tflops']:>7.1f} {r['fwd_bwd_tflops']:>7.1f} {fx:>6} {bx:>6} {r['max_abs_error']:>8.1e}")
    sparse = [r for r in rows if r["kind"] == "sparse"]
    if sparse:
        print(f"\nBlock-sparse vs dense flash, {dtype_name}, non-causal, fwd+bwd (target: sparse / (density x dense) <= 1.5)")
        print(f"{'impl':<22} {'T':>6} {'density':>8} {'f+b ms':>9} {'/ (d x dense)':>14}")
        for r in sparse:
            ms = f"{r['fwd_bwd_ms']:.2f}" if "fwd_bwd_ms" in r else r.get("status", "")
            ratio = f"{r['vs_density_x_dense']:.2f}" if "vs_density_x_dense" in r else "-"
            print(f"{r['impl']:<22} {r['T']:>6} {r['density']:>8.3f} {ms:>9} {ratio:>14}")


# ------------------------------------------------------------------------------ CPU: correctness only


def interpreter_check(log):
    """One tiny size of each kernel under the interpreter against the float64 reference."""
    checks = []
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 64, 2, 32, generator=g) for _ in range(3))
    for causal in (False, True):
        qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
        out = K.flash_attention(qq, kk, vv, causal=causal, backend="triton")
        grads = torch.autograd.grad(out.sum(), (qq, kk, vv))
        q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
        ref = K.flash_attention(q64, k64, v64, causal=causal, backend="reference")
        ref_grads = torch.autograd.grad(ref.sum(), (q64, k64, v64))
        err = max((a.double() - b).abs().max().item() for a, b in zip((out, *grads), (ref, *ref_grads)))
        checks.append({"kernel": "flash_attention", "causal": causal, "max_abs_error": err})
    layout = L.bigbird_layout(4, 1, 1, 1, causal=True)
    out = K.block_sparse_attention(q, k, v, layout, 16, causal=True, backend="triton")
    ref = K.block_sparse_attention(q.double(), k.double(), v.double(), layout, 16, causal=True, backend="reference")
    checks.append({"kernel": "block_sparse_attention", "causal": True,
                   "max_abs_error": (out.double() - ref).abs().max().item()})
    for c in checks:
        log(f"  {c['kernel']:<24} causal={c['causal']!s:<5} max |kernel - float64| = {c['max_abs_error']:.2e}")
    if max(c["max_abs_error"] for c in checks) > 1e-4:
        raise SystemExit("correctness check failed")
    return checks


# ------------------------------------------------------------------------------ main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help=f"JSON output (default on a GPU: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="head_dim 128, causal, T 1k/4k/8k/16k; sparse at 8k/16k")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    p.add_argument("--seqlens", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--causal", type=lambda s: s.lower() in ("1", "true", "yes"), nargs="+", default=[False, True])
    p.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=list(IMPLEMENTATIONS))
    p.add_argument("--reference-max-seqlen", type=int, default=2048,
                   help="the reference path materialises (B, H, T, T) scores: skip it beyond this length")
    p.add_argument("--no-sparse", action="store_true")
    p.add_argument("--sparse-seqlens", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    p.add_argument("--densities", type=float, nargs="+", default=[0.5, 0.25, 0.1, 0.05])
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--sparse-head-dim", type=int, default=128)
    p.add_argument("--dry-run", action="store_true",
                   help="without a GPU: run the sweep code at tiny sizes under the interpreter (tests this script)")
    args = p.parse_args(argv)
    args.device, args.dtype = ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    if args.dry_run and not torch.cuda.is_available():
        args.batch, args.heads, args.head_dims, args.seqlens = 1, 2, [32], [48, 64]
        args.sparse_seqlens, args.densities, args.block_size, args.sparse_head_dim = [64], [0.5], 16, 32
        args.reference_max_seqlen = 48
        log("DRY RUN on CPU under the Triton interpreter: exercises this script only; the figures mean nothing.")
        rows = dense_sweep(args, log) + sparse_sweep(args, log)
        print_tables(rows, "float32")
        if args.out:
            args.out.write_text(json.dumps({"meta": {"device": "cpu dry run"}, "rows": rows}, indent=2))
        return
    if not torch.cuda.is_available():
        log("No CUDA GPU: running one tiny size of each kernel under the Triton interpreter, for correctness "
            "only. Interpreter timings are meaningless, so no throughput is measured or recorded.")
        checks = interpreter_check(log)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": "cpu (Triton interpreter)", "mode": "correctness only",
                                            "checks": checks}, indent=2))
            log(f"wrote {args.out}")
        return

    if args.quick:
        args.head_dims, args.causal, args.seqlens = [128], [True], [1024, 4096, 8192, 16384]
        args.sparse_seqlens = [8192, 16384]
    device = torch.cuda.get_device_name()
    log(f"GPU: {device}; torch {torch.__version__}; B={args.batch} H={args.heads} bf16; first calls autotune")
    rows = dense_sweep(args, log)
    if not args.no_sparse:
        rows += sparse_sweep(args, log)
    print_tables(rows, "bf16")
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "flops": "fwd = 4*B*H*Tq*Tk*D (x0.5 causal); bwd = 2.5x fwd; fwd+bwd = 3.5x fwd",
            "baseline": "torch SDPA flash backend (sdpa-flash), same process"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    log(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
