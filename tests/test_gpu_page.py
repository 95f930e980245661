"""star.book.gpu: the page "Running the book on a GPU" — stored chapter times, and the stored accelerator
measurement when there is one (the page says when there is none)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from star import sweep
from star.book import gpu
from star.book.pages import toc_pages

ROOT = Path(__file__).resolve().parents[1]
FORCED = {"book/intro", "book/status"}  # executed on every build, never cached: not timed


def test_the_stored_chapter_times_cover_every_chapter():
    times = gpu.chapter_times("cpu")
    assert times is not None, "results/timing/cpu/chapter_times.json is missing (experiments/chapter_times.py)"
    chapters = [p for p in toc_pages(ROOT) if (ROOT / f"{p}.ipynb").is_file() and p not in FORCED]
    missing = sorted(set(chapters) - set(times["chapters"]))
    assert missing == [], f"no stored cpu-scale time for {missing}: rerun experiments/chapter_times.py"
    assert times["scale"] == "cpu" and all(s > 0 for s in times["chapters"].values())
    assert "load average" in gpu.times_summary(times)
    rows = gpu.chapter_time_rows(times, ROOT)
    assert [r[0] for r in rows][:2] == ["The appendix proofs, verified",
                                   "The noisy quadratic model: meta-gradient variance and ES meta-training"]
    assert all(re.fullmatch(r"\d+ min \d\d s", r[1]) for r in rows)


def _report(platform="gpu", task="fmnist_mlp", smoke=False):
    return {"settings": {"task": task, "trunc": 50, "smoke": smoke},
            "timing": [{"platform": "cpu", "kind": "cpu", "star_step_ms": 20.0, "adam_step_ms": 5.0,
                        "pes_inner_steps_per_s": 500.0, "pes_num_tasks": 8},
                       {"platform": platform, "kind": "NVIDIA H200", "star_step_ms": 1.0, "adam_step_ms": 0.5,
                        "pes_inner_steps_per_s": 20000.0, "pes_num_tasks": 8}],
            "runs": [{"folder": "fmnist_mlp_gpu_n256_s0", "num_tasks": 256, "steps": 40, "median_step_s": 12.0,
                      "first_meta_loss": 0.5, "last_meta_loss": 0.45,
                      "meta_curve": {"first": 0.392, "last": 2.303, "nominal": 0.392}}]}


def _root_with(tmp_path, reports):
    (tmp_path / "_toc.yml").write_text("root: book/intro\n")
    for device, report in reports.items():
        folder = tmp_path / "results" / "accelerator" / device
        folder.mkdir(parents=True)
        (folder / "accelerator.json").write_text(json.dumps(report))
    return tmp_path


def test_without_a_stored_accelerator_measurement_there_is_nothing_to_show(tmp_path):
    root = _root_with(tmp_path, {})
    assert gpu.accelerator_reports(root) == [] and gpu.accelerator_tables([]) == []
    assert gpu.grid_hours(sweep.get_grid("indist", "paper"), root) == {}


def test_a_stored_measurement_gives_rates_estimates_and_a_plan(tmp_path):
    root = _root_with(tmp_path, {"h200": _report(), "cpu_smoke": _report(platform="cpu", smoke=True)})
    reports = gpu.accelerator_reports(root)
    assert [p for p, _ in reports] == ["results/accelerator/cpu_smoke/accelerator.json",
                                       "results/accelerator/h200/accelerator.json"]
    grid = sweep.get_grid("indist", "paper")
    hours = gpu.grid_hours(grid, root)  # the smoke report (another task size, a CPU) is not used
    expected = grid.compute_estimate(inner_steps_per_s=20000.0)["hours"]
    assert hours == {"one NVIDIA H200 (measured rate)": pytest.approx(expected)}
    plan = gpu.paper_plan(reports[1][1])
    assert plan[0]["num_tasks"] == 256 and plan[0]["fits"] == {1: 300, 4: 1200, 12: 3600}
    rows = gpu.accelerator_rows(reports[1][1])
    assert len(rows) == 1 and rows[0]["cpu"]["star_step_ms"] == 20.0
    tables = gpu.accelerator_tables(reports[1:], grid, root)
    html = "".join(t._repr_html_() for t in tables)
    assert len(tables) == 3 and "NVIDIA H200" in html and "3600" in html
    assert "fmnist_mlp_gpu" not in html and "<td>0</td><td>256</td>" in html  # the run by its seed, not its folder id
    assert "0.392 → 2.303" in html and "0.500 → 0.450" in html


def test_a_run_too_short_to_have_a_rate_is_left_out_of_the_plan():
    report = _report()
    report["runs"][0].update(steps=1)
    assert gpu.paper_plan(report) == []
    report["runs"][0].update(steps=40, median_step_s=float("nan"))
    assert gpu.paper_plan(report) == []
