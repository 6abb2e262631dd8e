"""The results page of a pipeline run: a markdown table (stage x domain, mean +- std over seeds) and
PNG plots (accuracy by stage, training curves, the RL reward curve), from `results.json`.

    write_report(results, Path("runs/pipeline"), docs_page=Path("docs/results.md"))

matplotlib (the `plot` extra) draws the plots; without it the page is written without them.
"""
from __future__ import annotations

import json
import shutil
import statistics
import warnings
from pathlib import Path

STAGE_ORDER = ("cot_only", "pot_only", "sft", "sft_continued", "rft", "dpo", "grpo", "ppo")
CURVES = ("pretrain", "sft", "cot_only", "pot_only", "rft", "sft_continued", "critique", "dpo")


def mean_over_seeds(items: list[dict]) -> dict:
    """Numbers -> their mean (with `<name>_std` when several seeds), nested dicts recursively."""
    out = {}
    for key, value in items[0].items():
        values = [it[key] for it in items if key in it]
        if isinstance(value, dict):
            out[key] = mean_over_seeds(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.fmean(values)
            if len(values) > 1:
                out[f"{key}_std"] = statistics.stdev(values)
        else:
            out[key] = value
    return out


def _pm(stage: dict, key: str, pct: bool = True) -> str:
    if key not in stage:
        return "–"
    scale = 100 if pct else 1
    text = f"{stage[key] * scale:.1f}" if pct else f"{stage[key]:.3f}"
    if f"{key}_std" in stage:
        text += f" ± {stage[f'{key}_std'] * scale:.1f}" if pct else f" ± {stage[f'{key}_std']:.3f}"
    return text


def results_markdown(results: dict, image_dir: str | None) -> str:
    stages = {k: results["stages"][k] for k in STAGE_ORDER if k in results["stages"]}
    domains = sorted({d for s in stages.values() for d in s.get("by_domain", {}) if not d.endswith("_std")})
    n_seeds = len(results.get("seeds", [0]))
    cfg = results.get("config", {})
    lines = ["# Results: the method at tiny scale on a CPU", "",
             f"`recipes/pipeline.py` ({n_seeds} seed{'s' if n_seeds > 1 else ''}: {results.get('seeds')}), "
             f"{results.get('seconds', 0) / 60:.1f} minutes in all. Test accuracy in % (greedy decoding, python "
             f"blocks executed), {'mean ± std over seeds' if n_seeds > 1 else 'one seed'}; the test split is held "
             f"out from every stage and from checkpoint selection.", "",
             "| stage | test accuracy | " + " | ".join(domains) + " |",
             "|---|---|" + "---|" * len(domains)]
    for name, s in stages.items():
        row = [name, f"**{_pm(s, 'accuracy')}**"]
        row += [_pm(s.get("by_domain", {}), d) for d in domains]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""]
    runs = results.get("runs", [])
    if len(runs) > 1:  # seeds differ in data and initialization: compare stages within a seed
        lines += ["Per seed (the same data and initialization down a column, so differences between stages are "
                  "paired):", "", "| stage | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        for name in stages:
            cells = [f"{100 * r['stages'][name]['accuracy']:.1f}" if "accuracy" in r["stages"].get(name, {}) else "–"
                     for r in runs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [""]
    if image_dir:
        lines += [f"![accuracy by stage]({image_dir}/accuracy_by_stage.png)", ""]
    rft, dpo, crit = stages.get("rft", {}), stages.get("dpo", {}), results.get("critique", {})
    lines += ["## The method's own figures", "",
              "| figure | value | the talk |", "|---|---|---|"]
    if rft:
        lines += [f"| RFT coverage (pool problems with >= 1 correct sample) | {_pm(rft, 'coverage')} % | |",
                  f"| RFT distinct correct paths per problem | {_pm(rft, 'distinct_paths_per_problem', pct=False)} | |"]
    if "win_rate_vs_rft" in dpo:
        w = dpo["win_rate_vs_rft"]
        lines.append(f"| DPO win / tie / loss against RFT | {_pm(w, 'win')} / {_pm(w, 'tie')} / {_pm(w, 'loss')} % "
                     f"| 17% win rate |")
    for algo in ("grpo", "ppo"):
        if algo in stages and "reward_first" in stages[algo]:
            lines.append(f"| {algo.upper()} mean reward, first -> last step | {_pm(stages[algo], 'reward_first', False)}"
                         f" -> {_pm(stages[algo], 'reward_last', False)} | stable gains |")
    if crit:
        lines.append(f"| critique agreement with reference labels (held out) | {_pm(crit, 'agreement')} % "
                     f"| 84.8% (GPT-4o 85.9%) |")
        lines.append(f"| critique F1, good / bad class | {_pm(crit, 'f1_good', False)} / {_pm(crit, 'f1_bad', False)} "
                     f"(majority baseline {_pm(crit, 'majority_baseline')} %) | |")
    if "sft" in stages and "rft" in stages:
        lines.append(f"| SFT -> RFT test accuracy | {_pm(stages['sft'], 'accuracy')} -> {_pm(rft, 'accuracy')} % "
                     f"| 71% -> 77% |")
    lines += [""]
    for algo in ("grpo", "ppo"):
        curves = [r["stages"][algo]["reward_curve"] for r in results.get("runs", [])
                  if r.get("stages", {}).get(algo, {}).get("reward_curve")]
        if curves and min(len(c) for c in curves) >= 10:
            first = statistics.fmean(x for c in curves for x in c[:5])
            last = statistics.fmean(x for c in curves for x in c[-5:])
            lines += [f"{algo.upper()}'s per-step reward is the mean over one step's rollouts and is noisy; the mean "
                      f"over the first 5 steps is {first:.3f}, over the last 5 {last:.3f}.", ""]
    n_test = (results.get("runs") or [{}])[0].get("data", {}).get("test")
    if n_test and stages:
        p = statistics.fmean(s["accuracy"] for s in stages.values() if "accuracy" in s)
        se = 100 * (p * (1 - p) / n_test) ** 0.5
        lines += [f"Reading the table: with {n_test} test problems, one accuracy near {100 * p:.0f}% has a binomial "
                  f"standard error of about {se:.1f} points, so differences between stages under ~{2 * se:.0f} points "
                  f"are within noise for one seed; `--seeds 3` gives the spread over seeds.", ""]
    if image_dir:
        lines += [f"![training curves]({image_dir}/training_curves.png)", "",
                  f"![RL reward]({image_dir}/rl_reward.png)", ""]
    if runs:
        lines += ["## Time per stage (first seed)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in runs[0].get("seconds", {}).items()]
        lines += ["", "## Data (first seed)", "", ", ".join(f"{k}: {v}" for k, v in runs[0].get("data", {}).items()), ""]
    lines += ["## Configuration", "", "```json", json.dumps(cfg, indent=1), "```", ""]
    return "\n".join(lines)


def _metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in row and "step" in row:
            rows.append(row)
    return rows


def write_plots(results: dict, out: Path) -> list[Path]:
    """accuracy_by_stage.png, training_curves.png, rl_reward.png in `out`; [] without matplotlib."""
    with warnings.catch_warnings():  # matplotlib's layout engine complains about crowded toy-size plots
        warnings.filterwarnings("ignore", message=".*(constrained_layout|[Tt]ight layout).*")
        return _write_plots(results, out)


def _write_plots(results: dict, out: Path) -> list[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    files = []
    stages = [k for k in STAGE_ORDER if k in results["stages"] and "accuracy" in results["stages"][k]]
    acc = [100 * results["stages"][k]["accuracy"] for k in stages]
    err = [100 * results["stages"][k].get("accuracy_std", 0.0) for k in stages]
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    ax.bar(stages, acc, yerr=err, color=["#999", "#999", "#4c72b0", "#999", "#dd8452", "#55a868", "#c44e52", "#8172b3"][:len(stages)])
    for i, a in enumerate(acc):
        ax.text(i, a + 1, f"{a:.1f}", ha="center", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy by stage")
    files.append(out / "accuracy_by_stage.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    seed_dir = Path(results.get("config", {}).get("out", out)) / f"seed{results.get('seeds', [0])[0]}"
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    for name in CURVES:
        rows = _metrics(seed_dir / name / "metrics.jsonl")
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    ax.set_title("training curves (first seed)")
    files.append(out / "training_curves.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    for run in results.get("runs", []):
        for algo in ("grpo", "ppo"):
            curve = run["stages"].get(algo, {}).get("reward_curve")
            if curve:
                line, = ax.plot(range(1, len(curve) + 1), curve, alpha=0.4, label=f"{algo} seed {run['seed']}")
                if len(curve) >= 5:  # running mean over 5 steps
                    smooth = [statistics.fmean(curve[max(0, i - 4):i + 1]) for i in range(len(curve))]
                    ax.plot(range(1, len(curve) + 1), smooth, color=line.get_color(), label=f"{algo} seed {run['seed']}, "
                            "mean of 5 steps")
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward (fraction correct)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.set_title("RL on top of RFT: reward per step")
    files.append(out / "rl_reward.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def write_report(results: dict, out: Path, docs_page: Path | None = None) -> None:
    """`<out>/results.md` + plots in `out`; with `docs_page`, the same page there, plots copied to
    `<docs_page's folder>/results/`."""
    out = Path(out)
    plots = write_plots(results, out)
    (out / "results.md").write_text(results_markdown(results, "." if plots else None))
    if docs_page is not None:
        image_dir = docs_page.parent / "results"
        image_dir.mkdir(parents=True, exist_ok=True)
        for p in plots:
            shutil.copy(p, image_dir / p.name)
        docs_page.write_text(results_markdown(results, "results" if plots else None))
