"""README.md's headline benchmark table is generated from benchmarks/results/*.json."""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks import readme_table
from tests.conftest import REPO_ROOT


def test_readme_headline_table_matches_results_json():
    readme = (REPO_ROOT / "README.md").read_text()
    start, end = readme.index(readme_table.BEGIN), readme.index(readme_table.END)
    expected = readme_table.render_table(readme_table.load_results())
    assert readme[start:end + len(readme_table.END)] == expected, (
        "README.md's table differs from benchmarks/results: run python benchmarks/readme_table.py")
    assert set(readme_table.load_results()) == set(readme_table.ROWS)  # every suite has results


def test_results_json_record_commit_and_cpu_with_int8_flags():
    for name, result in readme_table.load_results().items():
        env = result["environment"]
        assert len(env["source"]["commit"]) == 40, name
        cpu = env["cpu"]
        assert cpu["model"] and cpu["description"].startswith(cpu["model"]), name
        assert isinstance(cpu["int8_dot_product"], bool), name


@pytest.fixture
def results():
    return copy.deepcopy(readme_table.load_results())


def test_render_table_puts_each_json_figure_in_its_row(results):
    results["compare"]["summary"].update({"ours_minus_baseline_accuracy_points": -0.123,
                                          "ours_minus_baseline_ci95_low": -0.456,
                                          "ours_minus_baseline_ci95_high": 0.789})
    results["runtime"]["summary"]["digits_int8_speedup_1t"] = 0.5
    table = readme_table.render_table(results)
    assert "-0.12 points, 95% CI [-0.46, +0.79]" in table
    assert "digits CNN 2.00x slower" in table  # a speed-up below 1 is written as slower
    for result in results.values():
        assert result["environment"]["cpu"]["description"] in table


def test_render_table_names_cpu_per_row_when_suites_ran_on_different_cpus(results):
    results["runtime"]["environment"]["cpu"]["description"] = "Other CPU (aarch64; asimddp)"
    table = readme_table.render_table(results)
    assert "| suite | figure | measured on |" in table
    assert "| runtime | " in table and "Other CPU (aarch64; asimddp)" in table


def test_replace_block_without_markers_raises():
    with pytest.raises(ValueError, match="marker"):
        readme_table.replace_block("no markers here", "x")


def test_readme_table_check_flag_reports_stale_readme(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    text = (REPO_ROOT / "README.md").read_text()
    readme.write_text(readme_table.replace_block(text, readme_table.BEGIN + "\nstale\n" + readme_table.END))
    monkeypatch.setattr(readme_table, "README", readme)
    assert readme_table.main(["--check"]) == 1
    assert readme_table.main([]) == 0
    assert readme_table.main(["--check"]) == 0
    assert json.dumps(readme.read_text()).count("benchmark-figures:begin") == 1
