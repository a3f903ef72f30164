"""rtverb match: targets from IRs and numbers, the fit end to end on a tiny case, the command."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from pedalboard.io import AudioFile

from rtverb import cli, synthesize
from rtverb.matching import MatchError, match, target_from_ir, target_from_text
from rtverb.room.presets import load_preset
from rtverb.room.room import Room

#: A low rate keeps each synthesized candidate cheap; bands up to 4 kHz still fit below Nyquist.
SR = 16000
#: Search budget of the end-to-end tests (a real match uses `MAX_EVALUATIONS`).
EVALUATIONS = 30
#: After the T30 corrections alone, T30 is within this of the target in the median band; the
#: full search reaches ~2 % (README figures).
T30_TOLERANCE = 0.10


def _target_ir(pair: str = "mono") -> np.ndarray:
    return synthesize(dataclasses.replace(load_preset("studio_live_room"), pair=pair), SR)


def test_match_finds_the_t30_of_a_synthesized_room():
    target = target_from_ir(_target_ir(), SR)
    result = match(target, SR, max_evaluations=EVALUATIONS)
    errors = np.abs(np.array(result.metrics.T30_s) / target.T30_s - 1)
    assert np.median(errors) < T30_TOLERANCE
    assert not result.room.domain_warnings()
    assert result.evaluations <= EVALUATIONS + 20


def test_workers_do_not_change_the_match():
    target = target_from_ir(_target_ir(), SR)
    alone = match(target, SR, max_evaluations=EVALUATIONS, workers=1)
    pooled = match(target, SR, max_evaluations=EVALUATIONS, workers=2)
    assert alone.room == pooled.room and alone.evaluations == pooled.evaluations


def test_a_matched_room_keeps_opposite_surfaces_alike_and_inside_the_domain():
    result = match(target_from_text(t30="250:1.2,4000:0.5", c50="0"), SR, max_evaluations=24)
    s = result.room.surfaces
    assert s.floor == s.ceiling and s.east == s.west and s.north == s.south
    assert not result.room.domain_warnings()


def test_outside_the_domain_says_which_bound_stopped_it():
    target = target_from_text(t30="6")  # a cathedral; the domain ends at 3 s Sabine
    result = match(target, SR, max_evaluations=EVALUATIONS)
    assert any("RT60" in b and "3 s" in b for b in result.bounds_hit), result.bounds_hit
    assert not result.room.domain_warnings()


def test_fixed_size_is_held():
    target = target_from_text(t30="0.8")
    result = match(target, SR, size_m=(9.0, 7.0, 3.5), max_evaluations=10)
    assert result.room.size_m == (9.0, 7.0, 3.5)


def test_target_numbers_parse():
    target = target_from_text(t30="500:1.8,1000:1.7", c50="-2")
    assert target.T30_s[1:3] == (1.8, 1.7) and math.isnan(target.T30_s[0])
    assert target.C50_db == (-2.0,) * 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t30": "600:1.8"}, "BAND:VALUE"),
        ({"c50": "-2"}, "at least one T30"),
        ({"t30": "abc"}, "BAND:VALUE"),
        ({"t30": "500:90"}, "0.05-20 s"),
    ],
)
def test_bad_target_numbers(kwargs, message):
    with pytest.raises(MatchError, match=message):
        target_from_text(**kwargs)


def test_bad_target_irs():
    rng = np.random.default_rng(0)
    ir = _target_ir()
    with pytest.raises(MatchError, match="silent"):
        target_from_ir(np.zeros(SR), SR)
    with pytest.raises(MatchError, match="noise"):
        target_from_ir(rng.standard_normal(SR), SR)
    with pytest.raises(MatchError, match="too short"):
        target_from_ir(ir[: int(0.2 * SR)], SR)
    with pytest.raises(MatchError, match="several onsets"):
        target_from_ir(np.concatenate([ir[: SR // 2], ir]), SR)


def test_workers_must_be_positive():
    with pytest.raises(MatchError, match="workers"):
        match(target_from_text(t30="1"), SR, workers=0)


def test_fix_needs_a_start():
    with pytest.raises(MatchError, match="--start"):
        match(target_from_text(t30="1"), SR, fix=frozenset({"size"}))


def test_cli_writes_a_room_file(tmp_path, capsys):
    wav, out = tmp_path / "target.wav", tmp_path / "matched.toml"
    with AudioFile(str(wav), "w", SR, 1, bit_depth=32) as f:
        f.write(_target_ir()[None])
    argv = ["match", str(wav), "-o", str(out), "--max-evaluations", str(EVALUATIONS), "--quiet"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "T30 (s)" in text and "wrote" in text
    room = Room.from_toml(out)
    assert "target.wav" in room.description


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--t30", "abc"], "BAND:VALUE"),
        (["missing.wav"], "no such file"),
        (["--t30", "1", "--fix", "size"], "--start"),
        (["--t30", "1", "--size", "1,2"], "X,Y,Z"),
        (["--t30", "1", "--size", "100,5,3"], "--size"),
        (["--t30", "1", "--max-evaluations", "0"], "--max-evaluations"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "room.toml"
    assert cli.main(["match", *argv, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_pair_target_averages_its_channels():
    ir = _target_ir(pair="ortf")
    pair, left = target_from_ir(ir, SR), target_from_ir(ir[0], SR)
    right = target_from_ir(ir[1], SR)
    np.testing.assert_allclose(pair.T30_s, (np.array(left.T30_s) + right.T30_s) / 2)
    assert pair.DRR_db == pytest.approx((left.DRR_db + right.DRR_db) / 2)


def test_fit_mix_matches_the_ir_rtverb_plays():
    from rtverb.matching.fit import matched_ir

    room = dataclasses.replace(load_preset("studio_live_room"), pair="mono")
    plain, played = matched_ir(room, SR), matched_ir(room, SR, with_mix=True)
    assert played[0] == pytest.approx(
        10 ** (room.dry_db / 20) + 10 ** (room.wet_db / 20) * plain[0]
    )
    np.testing.assert_allclose(played[1:], 10 ** (room.wet_db / 20) * plain[1:], rtol=1e-6)
    target = target_from_ir(played, SR)
    result = match(target, SR, fit_mix=True, max_evaluations=EVALUATIONS)
    assert result.room.dry_db != room.dry_db  # fitted, not the start's
