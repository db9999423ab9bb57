"""bench/control_compare.py on a tiny configuration: the baseline's ctl is really the one
measured (extracted from git), both codes run every step, and the section renders."""

from __future__ import annotations

from bench import baselines, control_compare


def test_both_codes_run_every_step_and_the_section_renders():
    result = control_compare.run(only="40", log=lambda *a: None)
    assert result["baseline"] == baselines.CONTROL.commit
    assert "/before/ctl/" in result["ctl"]["before"] and "/before/" not in result["ctl"]["after"]
    (size,) = result["sizes"]
    assert size["routes"] == 40
    for side in ("before", "after"):
        (probe,) = size["per_run"][side]
        for step in ("load", "translate", "plan", "plan_unchanged", "edit_load", "edit_translate", "edit_plan"):
            assert probe["cpu"][step] > 0, (side, step)
        assert probe["ops"] > 0 and probe["ops_unchanged"] == 0 and probe["edit_ops"] > 0
        assert 0 < probe["max_rss_mib"] < 4096
    text = control_compare.markdown(result)
    assert text.startswith(f"## {control_compare.TITLE}") and "### 40 routes x 8 backends" in text
    assert f"| before ({baselines.CONTROL.commit[:10]}) |" in text
