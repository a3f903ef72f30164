"""rtverb.synthesize: scale, determinism, sample rates, domain warnings, model-file checks."""

import dataclasses
import json
import re
import shutil
import warnings

import numpy as np
import pytest

from rtverb.analysis.acoustics import measure
from rtverb.room.room import SPEED_OF_SOUND_M_S, Room
from rtverb.synth import (
    MODEL_PATH,
    ModelError,
    Synthesizer,
    features,
    render_ir,
    synthesize,
    synthesize_analytic,
)
from rtverb.synth.early import DELAY_SAMPLES, antoni_windows, early_ir
from rtverb.synth.physics import AIR_ABSORPTION_PER_M, RoomPhysics

ROOM = Room()
PHYSICS = RoomPhysics.of(ROOM)
#: T30 measured at 1 kHz may differ this much between sample rates: the same envelope, band
#: filters designed for each rate, and a different draw of the fixed-seed noise.
RATE_T30_RTOL = 0.10
#: The direct sound's energy within +-20 samples of its arrival may miss the simulator's scale
#: by this fraction: what the bank's crossfades spread further (measured 2 %).
DIRECT_RTOL = 0.05


def test_deterministic_float32_mono():
    a, b = synthesize(ROOM, 48000), synthesize(ROOM, 48000)
    assert a.dtype == np.float32 and a.ndim == 1
    np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(a))


def test_direct_sound_is_exact_and_on_the_simulator_scale():
    fs = 48000
    ir = synthesize(ROOM, fs)
    onset = int(round(ROOM.distance_m / SPEED_OF_SOUND_M_S * fs)) + DELAY_SAMPLES
    window = slice(onset - 20, onset + 20)
    # the direct sound has energy 1 / distance^2 less the air's absorption in each band
    # (mostly above 11 kHz, 7 % here): a sum over the bank's bands, which sum to one; a
    # fractional delay and the bands' crossfades spread it over a few samples (98 % within
    # +-20 samples)
    d = ROOM.distance_m
    g2 = antoni_windows(1 << 16, fs) ** 2
    amplitude = np.exp(-0.5 * AIR_ABSORPTION_PER_M[: len(g2)] * d) / d
    expected = np.mean((amplitude[:, None] * g2).sum(axis=0) ** 2)
    direct = ir[onset - 20 : onset + 21]
    assert np.sum(direct.astype(np.float64) ** 2) == pytest.approx(expected, rel=DIRECT_RTOL)
    # before it, only the slow ripple of the simulator's zero-phase 10 Hz high-pass (< 1 %)
    assert np.abs(ir[: onset - 300]).max() < 0.01 / ROOM.distance_m
    # around it, the exact early part; the late envelope may start at the direct sound's frame,
    # 40 dB or more below it (1 % of the peak)
    early = early_ir(PHYSICS, fs)
    np.testing.assert_allclose(ir[window], early[window], atol=1e-2 * np.abs(early).max())


def _direct_energy(room: Room, ir: np.ndarray, fs: int) -> float:
    onset = int(round(room.distance_m / SPEED_OF_SOUND_M_S * fs)) + DELAY_SAMPLES
    return float(np.sum(ir[onset - 10 : onset + 11].astype(np.float64) ** 2))


def test_level_follows_distance():
    near = dataclasses.replace(ROOM, listener_position_m=(3.0, 2.5, 1.5))
    far = dataclasses.replace(ROOM, listener_position_m=(6.0, 4.0, 1.5))
    e_near, e_far = (_direct_energy(r, synthesize(r, 48000), 48000) for r in (near, far))
    assert e_near / e_far == pytest.approx((far.distance_m / near.distance_m) ** 2, rel=0.1)


@pytest.mark.parametrize("fs", [16000, 44100, 96000])
def test_any_sample_rate(fs):
    ref = measure(synthesize(ROOM, 48000), 48000, ROOM.distance_m, DELAY_SAMPLES)
    ir = synthesize(ROOM, fs)
    got = measure(ir, fs, ROOM.distance_m, DELAY_SAMPLES)
    assert got.T30_s[3] == pytest.approx(ref.T30_s[3], rel=RATE_T30_RTOL)


def test_outside_the_domain_warns_and_still_synthesizes():
    huge = dataclasses.replace(ROOM, size_m=(30.0, 5.0, 3.0))
    with pytest.warns(UserWarning, match="outside the model domain"):
        ir = synthesize(huge, 48000)
    assert np.all(np.isfinite(ir)) and np.any(ir)


def test_extreme_rooms_give_finite_bounded_model_inputs():
    extreme = Room(
        size_m=(50.0, 1.0, 1.0),
        source_position_m=(0.01, 0.5, 0.5),
        listener_position_m=(49.9, 0.5, 0.5),
        surfaces=dataclasses.replace(ROOM.surfaces, floor=1.0, ceiling=0.01),
    )
    x, baseline = features.model_input(RoomPhysics.of(extreme))
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.all(np.isfinite(synthesize(extreme, 48000)))


def test_bad_sample_rate():
    with pytest.raises(ValueError, match="sample_rate_hz"):
        synthesize(ROOM, 1000)


def test_silent_envelope_leaves_the_exact_early_part():
    silent = np.full((features.N_BANDS, features.N_FRAMES), features.FLOOR_DB)
    ir, early = render_ir(PHYSICS, silent, 48000), early_ir(PHYSICS, 48000)
    # FLOOR_DB (-160 dB per bin) still leaves noise of amplitude ~1e-8
    np.testing.assert_allclose(ir[: len(early)], early, atol=1e-7)


def test_analytic_baseline_decays_like_eyring():
    ir = synthesize_analytic(ROOM, 48000)
    t30 = measure(ir, 48000, ROOM.distance_m, DELAY_SAMPLES).T30_s[3]
    assert t30 == pytest.approx(PHYSICS.eyring_s[3], rel=0.2)


def test_render_follows_the_envelope():
    # 10 dB more late energy in every band -> 10 dB more energy after the early part
    env = features.analytic_envelope_db(PHYSICS)
    quiet, loud = render_ir(PHYSICS, env, 48000), render_ir(PHYSICS, env + 10, 48000)
    tail = slice(int(0.3 * 48000), int(0.6 * 48000))
    ratio_db = 10 * np.log10(np.sum(loud[tail] ** 2) / np.sum(quiet[tail] ** 2))
    assert ratio_db == pytest.approx(10.0, abs=0.1)


def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Synthesizer(tmp_path / "nope.onnx")


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 100)
    with pytest.raises(ModelError, match="bad.onnx"):
        Synthesizer(bad)


def test_mismatched_model_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODEL_PATH))
    for prop in model.metadata_props:
        if prop.key == "rtverb.table_hash":
            prop.value = "0000000000000000"
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="table_hash"):
        Synthesizer(path)


#: A room's envelope in a batch of two vs alone (dB): the batched matrix products may sum in
#: another order in float32 (~1e-5 dB seen).
BATCH_ATOL_DB = 1e-3


def test_the_source_positions_of_a_room_share_one_model_run(monkeypatch):
    synth = Synthesizer(MODEL_PATH)
    rooms = [
        PHYSICS.moved(r) for r in dataclasses.replace(ROOM, pair="ab", spread_m=3.0).point_sources()
    ]
    runs = []
    run = synth.session.run
    monkeypatch.setattr(synth.session, "run", lambda *a: runs.append(a) or run(*a))
    assert len(synth.envelopes_db(rooms)) == 2 and len(runs) == 1
    # the batch is the rooms one by one (the calibration, shared by the points, aside:
    # tests/test_calibrate.py)
    synth.calibrate = False
    alone = [synth.envelope_db(p) for p in rooms]
    together = synth.envelopes_db(rooms)
    assert np.abs(alone[0] - alone[1]).max() > 100 * BATCH_ATOL_DB  # two different positions
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=BATCH_ATOL_DB)


def test_a_model_with_a_fixed_batch_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from train.export import set_metadata

    model = onnx.load(str(MODEL_PATH))
    for tensor in model.graph.input:
        tensor.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    set_metadata(path, {})  # a valid checksum: only the batch is wrong
    with pytest.raises(ModelError, match="fixed batch of rooms; export it again"):
        Synthesizer(path)


#: The export's torch-vs-ONNX Runtime parity bound (`train.export.PARITY_RTOL`).
EXPORT_PARITY_RTOL = 1e-4


def test_shipped_model_describes_itself(tmp_path):
    meta = Synthesizer(shutil.copy(MODEL_PATH, tmp_path / "m.onnx")).metadata
    training = json.loads(meta["rtverb.training"])
    assert training["rooms_train"] > 0 and training["rooms_val"] > 0
    assert 1 <= training["best_epoch"] and np.isfinite(training["best_val_loss_db"])
    assert re.fullmatch(r"[0-9a-f]{7,40}", meta["rtverb.commit"])  # the commit it came from
    config = json.loads(meta["rtverb.model_config"])
    assert config["kind"] == meta["rtverb.model_kind"]
    assert all(config[k] >= 1 for k in ("width", "modes", "layers"))
    assert 0 <= float(meta["rtverb.parity_rel_error"]) <= EXPORT_PARITY_RTOL
    assert MODEL_PATH.stat().st_size <= 20e6


def test_a_non_finite_ir_is_never_returned(monkeypatch):
    from rtverb.synth import ModelError
    from rtverb.synth import ir as ir_module

    def broken(physics, envelope_db, fs, c50_db=None):
        out = np.zeros(64, np.float32)
        out[3] = np.nan
        return out

    monkeypatch.setattr(ir_module, "render_ir", broken)
    with pytest.raises(ModelError, match="1 NaN or infinite samples"):
        ir_module.synthesize_analytic(Room(), 48000)


@pytest.mark.parametrize("change", ["zeroed", "randomized", "no checksum"])
def test_a_model_whose_weights_are_not_what_it_claims_is_refused(change, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from rtverb.synth.model import CHECKSUM_KEY

    model = onnx.load(str(MODEL_PATH))
    if change == "no checksum":
        kept = [p for p in model.metadata_props if p.key != CHECKSUM_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
    else:
        weights = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
        array = numpy_helper.to_array(weights)
        new = (
            np.zeros_like(array)
            if change == "zeroed"
            else np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype)
        )
        weights.CopyFrom(numpy_helper.from_array(new, weights.name))
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=f"model does not match its checksum: {CHECKSUM_KEY}"):
        Synthesizer(path)


def test_the_shipped_model_matches_its_checksum():
    from rtverb.synth.model import CHECKSUM_KEY, model_checksum

    stored = Synthesizer(MODEL_PATH).metadata[CHECKSUM_KEY]
    assert model_checksum(MODEL_PATH.read_bytes(), stored) == stored
