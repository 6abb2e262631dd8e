"""The pipeline's results page: seed averaging and the markdown table."""
import statistics

import pytest

from mathlm.report import mean_over_seeds, results_markdown, write_report


def _run(seed, sft, rft):
    return {"stages": {"sft": {"accuracy": sft, "by_domain": {"arithmetic": sft, "calculus": 0.0}},
                       "rft": {"accuracy": rft, "by_domain": {"arithmetic": rft, "calculus": 0.5},
                               "coverage": 0.5, "distinct_paths_per_problem": 1.5}},
            "critique": {"agreement": 0.9, "f1_good": 0.8, "f1_bad": 0.7, "majority_baseline": 0.5},
            "seed": seed, "label": "x", "flag": True}


def test_mean_over_seeds_nested_with_std():
    runs = [_run(0, 0.2, 0.3), _run(1, 0.4, 0.6)]
    out = mean_over_seeds(runs)
    assert out["stages"]["sft"]["accuracy"] == pytest.approx(0.3)
    assert out["stages"]["sft"]["accuracy_std"] == pytest.approx(statistics.stdev([0.2, 0.4]))
    assert out["stages"]["rft"]["by_domain"]["arithmetic"] == pytest.approx(0.45)
    assert out["label"] == "x" and out["flag"] is True  # non-numbers (and bools) kept as they are
    single = mean_over_seeds([_run(0, 0.2, 0.3)])
    assert "accuracy_std" not in single["stages"]["sft"]


def test_results_markdown_table_rows_in_stage_order():
    runs = [_run(0, 0.2, 0.3), _run(1, 0.4, 0.6)]
    results = {"stages": mean_over_seeds([r["stages"] for r in runs]), "critique": runs[0]["critique"],
               "seeds": [0, 1], "seconds": 120, "config": {"k": 4}}
    text = results_markdown(results, image_dir=None)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| stage |"))
    assert header == "| stage | test accuracy | arithmetic | calculus |"
    sft_row = next(line for line in lines if line.startswith("| sft |"))
    rft_row = next(line for line in lines if line.startswith("| rft |"))
    assert lines.index(sft_row) < lines.index(rft_row)
    assert "**30.0 ± 14.1**" in sft_row and "| 0.0 ± 0.0 |" in sft_row
    assert "45.0 ± 21.2" in rft_row
    assert "| critique agreement with reference labels (held out) | 90.0 % |" in text
    assert "| SFT -> RFT test accuracy | 30.0 ± 14.1 -> 45.0 ± 21.2 % | 71% -> 77% |" in text
    results["runs"] = runs
    per_seed = results_markdown(results, image_dir=None)
    assert "| stage | seed 0 | seed 1 |" in per_seed and "| rft | 30.0 | 60.0 |" in per_seed


def test_write_report_page_links_images_it_wrote(tmp_path):
    pytest.importorskip("matplotlib")
    results = {"stages": _run(0, 0.2, 0.3)["stages"], "critique": {}, "seeds": [0], "seconds": 1, "config": {},
               "runs": [{"seed": 0, "stages": {}, "seconds": {"sft": 1.0}, "data": {"labelled": 3}}]}
    results["stages"]["grpo"] = {"accuracy": 0.3, "by_domain": {}, "reward_curve": [0.1, 0.2],
                                 "reward_first": 0.1, "reward_last": 0.2}
    docs = tmp_path / "docs" / "results.md"
    results["runs"][0]["stages"] = results["stages"]
    write_report(results, tmp_path / "run", docs_page=docs)
    page = docs.read_text()
    for line in page.splitlines():
        if line.startswith("!["):
            target = line.split("(", 1)[1].rstrip(")")
            assert (docs.parent / target).is_file(), target
    assert (tmp_path / "run" / "results.md").is_file()
