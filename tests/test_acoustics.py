"""rtverb.analysis.acoustics: decay times, clarity, noise-floor removal, and oracles.

Synthetic IRs have a known T60. Decaying *tones* (one per octave band) have an exactly
exponential band envelope, so they test the estimator itself (filter ringing, the fit, the
noise floor) to 2% in every band. Decaying *noise* is what a room gives, but one realization's
band envelope fluctuates: in a band of width B its own T30 scatters by about 0.4 / sqrt(B T60)
around the envelope's (measured: 5% at 125 Hz, 2.5% at 1 kHz for a 1 s decay), so noise tests
average realizations or compare the same realization with and without a noise floor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import fftconvolve

from rtverb.analysis import acoustics
from rtverb.analysis.acoustics import BANDS_HZ, Metrics, energy_decay_db, measure, octave_band

FS = 48000
#: The issue's accuracy for T30 on synthetic decays with a known T60.
T30_TOLERANCE = 0.02
#: Realizations averaged in the noise test: their mean T30 scatters < 0.7% at >= 500 Hz.
N_REALIZATIONS = 16
#: Bands where a 1 s noise decay holds enough independent samples (B * T60 >= 350) for the
#: mean over `N_REALIZATIONS` to test 2%; lower bands are covered by the tone test.
NOISE_BANDS_HZ = (500.0, 1000.0, 2000.0, 4000.0, 8000.0)
#: Noise floor of the "measured" IRs, dB re the decay's starting level: 60 dB of dynamic
#: range, a typical good measurement (ISO 3382 asks >= 45 dB above the floor for T30).
FLOOR_DB = -60.0
#: Clarity/definition of an exponential decay, vs the analytic value. The zero-phase band
#: filter smears the onset over about 1 / bandwidth and half of it falls before the onset:
#: measured 0.6 dB at 125 Hz, 0.1 dB at 1 kHz; the perceptual JND is 1 dB / 0.05.
CLARITY_TOLERANCE_DB = 0.7
DEFINITION_TOLERANCE = 0.025
#: Lundeby's crossing point vs the analytic one (a fit through a fluctuating decay; 7% seen).
CROSSING_TOLERANCE = 0.15
#: Our T30 vs pyroomacoustics' measure_rt60 on the same band (same fit, same range; they
#: differ only in where the -5 dB and -35 dB points are rounded to a sample).
PRA_TOLERANCE = 0.01


def decaying_tones(t60_s: float, length_s: float, floor_db: float | None = None) -> np.ndarray:
    """One sine per octave band, decaying 60 dB in ``t60_s``; 10 ms of silence first."""
    t = np.arange(int(length_s * FS)) / FS
    x = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(BANDS_HZ)) * 10 ** (-3 * t / t60_s)
    if floor_db is not None:
        x = x + np.random.default_rng(0).standard_normal(len(t)) * 10 ** (floor_db / 20)
    return np.concatenate([np.zeros(FS // 100), x])


def decaying_noise(
    t60_s: float, seed: int, length_s: float, floor_db: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, with a noise floor): Gaussian noise decaying 60 dB in ``t60_s``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(length_s * FS)) / FS
    clean = rng.standard_normal(len(t)) * 10 ** (-3 * t / t60_s)
    floor = 0.0 if floor_db is None else rng.standard_normal(len(t)) * 10 ** (floor_db / 20)
    lead = np.zeros(FS // 100)
    return np.concatenate([lead, clean]), np.concatenate([lead, clean + floor])


def relative(a: list[float], b: float | np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a) / b - 1)


# ---- decay times ---------------------------------------------------------------------------


@pytest.mark.parametrize("floor_db", [None, FLOOR_DB])
@pytest.mark.parametrize("t60_s", [0.1, 0.3, 1.0, 2.0])
def test_t30_of_decaying_tones_within_2_percent_in_every_band(
    t60_s: float, floor_db: float | None
) -> None:
    # With a floor, the IR runs on in noise long after the decay (as measured IRs do).
    length_s = max(3 * t60_s, 2.0) if floor_db else 1.5 * t60_s + 0.1
    m = measure(decaying_tones(t60_s, length_s, floor_db), FS)
    np.testing.assert_array_less(relative(m.T30_s, t60_s), T30_TOLERANCE)
    np.testing.assert_array_less(relative(m.T20_s, t60_s), T30_TOLERANCE)
    if t60_s >= 0.3:  # the tone's own onset transient dominates the first 10 dB of a 0.1 s decay
        np.testing.assert_array_less(relative(m.EDT_s, t60_s), T30_TOLERANCE)


@pytest.mark.parametrize("floor_db", [None, FLOOR_DB])
def test_t30_of_decaying_noise_within_2_percent(floor_db: float | None) -> None:
    t60_s = 1.0
    t30 = [
        measure(decaying_noise(t60_s, seed, 2.5, floor_db)[1], FS, bands_hz=NOISE_BANDS_HZ).T30_s
        for seed in range(N_REALIZATIONS)
    ]
    np.testing.assert_array_less(relative(np.mean(t30, axis=0), t60_s), T30_TOLERANCE)


@pytest.mark.parametrize(("t60_s", "fools_plain"), [(0.3, True), (1.0, False)])
def test_noise_floor_does_not_inflate_t30(t60_s: float, fools_plain: bool) -> None:
    """Same realization with and without a floor (2.7 s of noise after a 0.3 s decay fools
    the plain Schroeder integral; after a 1 s decay, 2 s of floor still biases it ~1%)."""
    ours, plain = [], []
    for seed in range(3):
        clean, noisy = decaying_noise(t60_s, seed, 3.0, FLOOR_DB)
        truth = np.array(measure(clean, FS).T30_s)
        ours.append(relative(measure(noisy, FS).T30_s, truth))
        onset = acoustics.onset_index(noisy, FS)
        plain.append(
            relative(
                [
                    acoustics.decay_time_s(
                        acoustics.schroeder_db(octave_band(noisy, FS, b)[onset:]),  # type: ignore[index]
                        FS,
                        -5.0,
                        -35.0,
                    )
                    for b in BANDS_HZ
                ],
                truth,
            )
        )
    np.testing.assert_array_less(np.max(ours, axis=0), T30_TOLERANCE)
    if fools_plain:  # without the noise-floor handling this test would fail
        assert np.min(plain) > T30_TOLERANCE


def test_lundeby_finds_where_the_decay_meets_the_noise() -> None:
    t60_s = 1.0
    expected_s = FLOOR_DB / (-60.0 / t60_s)
    for seed in range(2):
        _, noisy = decaying_noise(t60_s, seed, 3.0, FLOOR_DB)
        for band in BANDS_HZ:
            x = octave_band(noisy, FS, band)
            assert x is not None
            point, compensation, noise = acoustics.lundeby(np.square(x[FS // 100 :]), FS)
            assert abs(point / FS / expected_s - 1) < CROSSING_TOLERANCE, (band, point / FS)
            assert compensation > 0 and noise > 0


def test_ir_ending_in_its_decay_is_integrated_as_it_is() -> None:
    """No floor (a clean simulation): exactly the plain Schroeder integral."""
    clean, _ = decaying_noise(0.5, 0, 0.8)  # ends 96 dB down, still decaying
    for band in BANDS_HZ:
        x = octave_band(clean, FS, band)
        assert x is not None
        assert acoustics.lundeby(np.square(x), FS)[0] == len(x)
        np.testing.assert_array_equal(energy_decay_db(x, FS), acoustics.schroeder_db(x))


@pytest.mark.parametrize("t60_s", [0.1, 0.3])
def test_band_filter_ringing_does_not_lengthen_short_decays(t60_s: float) -> None:
    """The expected band energy of decaying white noise, without realization scatter.

    It is the noise's energy envelope convolved with the band filter's squared impulse
    response. At 125 Hz the filter's ringing adds 1% to a 0.1 s T30 (the model domain's
    shortest) and 20% to a 0.05 s one.
    """
    half = FS // 4
    impulse = np.zeros(2 * half)
    impulse[half] = 1.0
    lead = FS // 100
    envelope = np.concatenate([np.zeros(lead), 10 ** (-6 * np.arange(int(0.4 * FS)) / FS / t60_s)])
    for band in BANDS_HZ:
        response = octave_band(impulse, FS, band)
        assert response is not None
        energy = fftconvolve(envelope, np.square(response))[half : half + len(envelope)]
        edc = energy_decay_db(np.sqrt(np.abs(energy[lead:])), FS)  # abs: FFT round-off
        t30 = acoustics.decay_time_s(edc, FS, -5.0, -35.0)
        assert abs(t30 / t60_s - 1) < T30_TOLERANCE, band


# ---- clarity, definition, direct-to-reverberant ratio -------------------------------------


def test_clarity_and_definition_of_an_exponential_decay() -> None:
    t60_s = 0.5
    m = measure(decaying_tones(t60_s, 1.0), FS)
    k = 6 * np.log(10) / t60_s  # energy decays as exp(-k t)
    np.testing.assert_allclose(
        m.C50_db, 10 * np.log10(np.expm1(k * 0.05)), atol=CLARITY_TOLERANCE_DB
    )
    np.testing.assert_allclose(
        m.C80_db, 10 * np.log10(np.expm1(k * 0.08)), atol=CLARITY_TOLERANCE_DB
    )
    np.testing.assert_allclose(m.D50, -np.expm1(-k * 0.05), atol=DEFINITION_TOLERANCE)
    # D50 and C50 are two views of the same split.
    np.testing.assert_allclose(m.D50, 1 / (1 + 10 ** (-np.asarray(m.C50_db) / 10)), rtol=1e-9)


def test_broadband_c50_and_drr_of_three_impulses() -> None:
    """Direct sound 1, reflections 0.5 at +30 ms (early) and +100 ms (late): exact ratios."""
    ir = np.zeros(FS)
    onset = 480
    ir[onset], ir[onset + int(0.03 * FS)], ir[onset + int(0.1 * FS)] = 1.0, 0.5, 0.5
    m = measure(ir, FS)
    assert m.C50_broadband_db == pytest.approx(10 * np.log10((1 + 0.25) / 0.25), abs=1e-9)
    assert m.DRR_db == pytest.approx(10 * np.log10(1 / 0.5), abs=1e-9)
    # The same with the onset given by the geometry: 480 samples = 3.43 m.
    m2 = measure(ir, FS, distance_m=onset / FS * acoustics.SPEED_OF_SOUND_M_S)
    assert m2.DRR_db == pytest.approx(m.DRR_db, abs=1e-9)


def test_onset_is_the_geometric_path_when_the_distance_is_known() -> None:
    ir = np.zeros(FS)
    ir[1000] = 1.0
    ir[300] = 0.05  # a pre-echo below the detection threshold
    assert acoustics.onset_index(ir, FS) == 1000
    assert acoustics.onset_index(ir, FS, distance_m=3.43, delay_samples=40) == 480 + 40


def test_abruptly_ending_ir_is_not_mirrored_by_the_band_filter() -> None:
    """An IR cut right after a reflection: band C50s stay close to the broadband one."""
    ir = np.zeros(480 + int(0.1 * FS) + 1)
    ir[480], ir[480 + int(0.03 * FS)], ir[-1] = 1.0, 0.5, 0.5
    m = measure(ir, FS)
    # Broadband 7 dB; each band loses part of the direct and last arrivals to the cut.
    np.testing.assert_array_less(np.abs(np.asarray(m.C50_db) - m.C50_broadband_db), 1.5)


# ---- oracles on simulated rooms -----------------------------------------------------------


def simulated_rooms() -> list[tuple[np.ndarray, float]]:
    pytest.importorskip("pyroomacoustics")
    from train.datagen import sample_room
    from train.simulate import SIM_DELAY_SAMPLES, simulate

    out = []
    # Quick to simulate (0.9 s and 0.6 s IRs). Not room 1: its 1 kHz EDC has a step at -35 dB,
    # where measure_rt60 (which ends its fit 30 dB below its first sample under -5 dB, not at
    # -35 dB) lands on the other side of the step: 0.262 s against 0.244 s.
    for index in (2, 7):
        room = sample_room(np.random.default_rng([7, index]))
        sim = simulate(room, seed=index)
        assert sim.rir is not None
        onset = acoustics.onset_index(sim.rir, FS, room.distance_m, SIM_DELAY_SAMPLES)
        out.append((sim.rir[onset:].astype(np.float64), room.distance_m))
    return out


def test_t30_agrees_with_pyroomacoustics_on_simulated_rooms() -> None:
    from pyroomacoustics.experimental import measure_rt60

    compared = 0
    for ir, _ in simulated_rooms():
        m = measure(ir, FS, distance_m=0.0)  # already starts at the direct sound
        for band, t30 in zip(BANDS_HZ, m.T30_s, strict=True):
            x = octave_band(ir, FS, band)
            assert x is not None
            plain = acoustics.schroeder_db(x)
            if plain[int(0.9 * len(plain))] > -45:  # the IR stops before the band has decayed
                continue
            assert t30 == pytest.approx(measure_rt60(x, FS, decay_db=30), rel=PRA_TOLERANCE)
            # A clean simulation has no noise floor: the same as the plain integral.
            np.testing.assert_array_equal(energy_decay_db(x, FS), plain)
            compared += 1
    assert compared >= 10


# ---- inputs and outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ir", "message"),
    [
        (np.zeros((2, 100)), "one channel"),
        (np.zeros(0), "empty"),
        (np.array([0.0, np.nan, 1.0]), "NaN"),
        (np.zeros(100), "silent"),
    ],
)
def test_bad_impulse_responses_are_refused(ir: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure(ir, FS)


def test_bands_above_nyquist_and_too_short_irs_come_out_nan() -> None:
    m = measure(decaying_tones(0.5, 1.0)[::3], FS // 3)  # 16 kHz: the 8 kHz band is gone
    assert np.isnan(m.T30_s[-1]) and np.isfinite(m.T30_s[:-1]).all()
    short = measure(np.array([1.0, 0.5, 0.25]), FS)
    assert np.isnan(short.T30_s).all()


def test_metrics_to_json_turns_nan_into_null() -> None:
    m = measure(decaying_tones(0.5, 1.0)[::3], FS // 3)
    data = json.loads(json.dumps(m.to_json()))
    assert data["T30_s"][-1] is None
    assert set(data) == {f.name for f in Metrics.__dataclass_fields__.values()}
