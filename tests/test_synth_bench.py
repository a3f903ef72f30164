"""`python -m rtverb.bench.synth`: the report and the JSON object. Timing values are not judged."""

from __future__ import annotations

import json

from rtverb.bench import synth as synth_bench

FAST = ["--reps", "1", "--rooms", "2"]


def test_report_names_setup_stages_and_target(capsys) -> None:
    assert synth_bench.main(FAST) == 0
    out = capsys.readouterr().out
    assert "2 rooms" in out and "1 repetitions" in out and "load average" in out
    for stage in (*synth_bench.STAGES, "sum", synth_bench.TOTAL, *synth_bench.STEREO):
        assert f"\n{stage} " in out
    assert "target: total p50 <= 5 ms" in out
    assert "target: pair p50 <= 1.5x mono" in out and "target: true_stereo p50 <= 2.5x" in out


def test_json_has_every_stage_for_all_and_long_irs(capsys) -> None:
    assert synth_bench.main(["--reps", "1", "--rooms", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["ir_s"]) == 1 and data["ir_s"][0] < synth_bench.LONG_IR_S
    assert set(data["figures"]) == {"all", "long"}
    stages = set(data["figures"]["all"])
    assert stages == {*synth_bench.STAGES, "sum", synth_bench.TOTAL, *synth_bench.STEREO}
    assert set(data["figures"]["all"]["total"]) == {
        "cpu_p50_ms", "cpu_p90_ms", "wall_p50_ms", "wall_p90_ms"
    }  # fmt: skip
    assert data["figures"]["all"]["total"]["cpu_p50_ms"] > 0
    assert data["figures"]["long"]["total"]["cpu_p50_ms"] is None  # nothing to report


def test_stereo_rows_use_a_pair_facing_the_source_and_a_spread_that_fits() -> None:
    for room in synth_bench.bench_rooms():
        rooms = synth_bench.stereo_rooms(room)
        assert rooms["pair"].pair == "ortf" and not rooms["pair"].true_stereo
        assert rooms["true_stereo"].true_stereo
