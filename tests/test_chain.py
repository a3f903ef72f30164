"""CHAIN text parsing: built-ins, external plugin paths, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest

from rtverb.offline import chain
from rtverb.offline.chain import ChainError, builtin_plugins, parse_chain

SAMPLE_RATE_HZ = 48000


def test_parses_the_readme_example_into_configured_plugins() -> None:
    board = parse_chain(
        "HighpassFilter(cutoff_frequency_hz=80) | Compressor(threshold_db=-18, ratio=3)"
    )
    assert isinstance(board, pedalboard.Pedalboard)
    assert [type(p).__name__ for p in board] == ["HighpassFilter", "Compressor"]
    assert board[0].cutoff_frequency_hz == pytest.approx(80)
    assert board[1].threshold_db == pytest.approx(-18)
    assert board[1].ratio == pytest.approx(3)


def test_enums_bools_bare_names_and_negative_numbers() -> None:
    board = parse_chain(
        "LadderFilter(mode=HPF24, cutoff_hz=300) | Invert | BrickwallLimiter(true_peak=True)"
        " | Gain(gain_db=-3.5) | Resample(target_sample_rate=16000, quality=Linear)"
    )
    assert board[0].mode == pedalboard.LadderFilter.Mode.HPF24
    assert isinstance(board[1], pedalboard.Invert)
    assert board[2].true_peak is True
    assert board[3].gain_db == pytest.approx(-3.5)
    assert board[4].quality == pedalboard.Resample.Quality.Linear


def test_parsed_chain_processes_like_the_hand_built_one() -> None:
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((2, 4096)).astype(np.float32) * 0.1
    parsed = parse_chain("HighpassFilter(cutoff_frequency_hz=120)|Gain(gain_db=6)")
    manual = pedalboard.Pedalboard(
        [pedalboard.HighpassFilter(cutoff_frequency_hz=120), pedalboard.Gain(gain_db=6)]
    )
    np.testing.assert_array_equal(parsed(audio, SAMPLE_RATE_HZ), manual(audio, SAMPLE_RATE_HZ))


def test_every_listed_builtin_builds_with_its_defaults() -> None:
    for name, params in builtin_plugins().items():
        if any(p.default == "required" for p in params):
            continue
        board = parse_chain(f"{name}()")
        assert type(board[0]).__name__ == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty chain"),
        ("   ", "empty chain"),
        ("Gain(gain_db=1) |", "empty plugin"),
        ("Compresor(ratio=2)", "Did you mean 'Compressor'"),
        ("Foo()", "Built-in plugins:\n  Bitcrush"),
        ("Compressor(rato=2)", "Valid parameters (with defaults): threshold_db=0, ratio=1"),
        ("Compressor(2)", "by name"),
        ("Compressor(ratio=0.5)", "ratio must be a value >= 1.0"),
        ("Gain(gain_db=True)", "expected a number"),
        ("Gain(gain_db='3')", "expected a number"),
        ("Gain(gain_db=1e999)", "finite"),
        ("HighpassFilter(cutoff_frequency_hz=0)", "> 0 Hz"),
        ("BrickwallLimiter(true_peak=1)", "True or False"),
        ("LadderFilter(mode=HPF13)", "one of LPF12, HPF12"),
        ("Gain(gain_db=__import__('os').getpid())", "not a literal"),
        ("os.system('true')", "expected Name(param=value"),
        ("Gain(gain_db=1", "unbalanced"),
        ("Gain(**{'gain_db': 1})", "not **mapping"),
        ("Gain(gain_db=1) Gain()", "cannot parse"),
        ("Convolution(impulse_response_filename='/no/such.wav')", "no such file"),
        ("Convolution(mix=0.5)", "missing impulse_response_filename"),
        ("Pedalboard()", "unknown plugin"),
        ("PitchShift(semitones=3)", "outputs silence when streamed"),
        ("/no/such/Plugin.vst3 mix=0.5", "no such plugin file"),
    ],
)
def test_bad_chains_raise_clear_errors(text: str, expected: str) -> None:
    with pytest.raises(ChainError) as info:
        parse_chain(text)
    assert expected in str(info.value)


def test_chain_error_is_a_value_error() -> None:
    assert issubclass(ChainError, ValueError)


class _FakeExternal:
    """Stands in for a loaded VST3: pedalboard exposes `parameters` and settable attributes."""

    def __init__(self) -> None:
        self.parameters = {"mix": object(), "drive_db": object(), "mode": object()}

    def __setattr__(self, name: str, value: object) -> None:
        if name == "mix" and not 0 <= float(value) <= 1:  # type: ignore[arg-type]
            raise ValueError("mix must be in [0, 1]")
        object.__setattr__(self, name, value)


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    path = tmp_path / "My Synth.vst3"
    path.mkdir()
    loaded: list[str] = []

    def load_plugin(p: str) -> _FakeExternal:
        loaded.append(p)
        return _FakeExternal()

    monkeypatch.setattr(chain.pedalboard, "load_plugin", load_plugin)
    monkeypatch.setattr(chain.pedalboard, "Pedalboard", lambda plugins: list(plugins))
    return path, loaded


def test_external_plugin_path_with_spaces_and_name_value_params(fake_plugin) -> None:
    path, loaded = fake_plugin
    board = parse_chain(f"{path} mix=0.25, drive_db=-3 mode=vintage | Gain(gain_db=2)")
    plugin = board[0]
    assert loaded == [str(path)]
    assert plugin.mix == pytest.approx(0.25)
    assert plugin.drive_db == pytest.approx(-3)
    assert plugin.mode == "vintage"
    assert board[1].gain_db == pytest.approx(2)


def test_external_plugin_call_form_and_quoted_path(fake_plugin) -> None:
    path, _ = fake_plugin
    board = parse_chain(f'"{path}"(mix=0.5)')
    assert board[0].mix == pytest.approx(0.5)


def test_external_plugin_errors_list_its_parameters(fake_plugin) -> None:
    path, _ = fake_plugin
    with pytest.raises(ChainError, match="Valid parameters: drive_db, mix, mode"):
        parse_chain(f"{path} mixx=0.5")
    with pytest.raises(ChainError, match="mix must be in"):
        parse_chain(f"{path} mix=3")
    with pytest.raises(ChainError, match="expected name=value"):
        parse_chain(f"{path} mix")


#: Streams, but its output differs from whole-buffer processing (lo-fi codec, resampling
#: phase); it is not silent.
STREAMS_DIFFERENTLY = {"GSMFullRateCompressor"}


def test_every_listed_builtin_streams_like_whole_buffer_processing() -> None:
    """What `rtverb render`/`live` rely on: ``reset=False`` blocks + a flush of silence give
    what one whole-buffer call gives. A plugin that fails this belongs in NOT_STREAMABLE."""
    rng = np.random.default_rng(1)
    audio = (0.25 * rng.standard_normal((2, SAMPLE_RATE_HZ // 2))).astype(np.float32)
    block = 1024
    for name, params in builtin_plugins().items():
        if any(p.default == "required" for p in params):
            continue
        streamed, whole = parse_chain(f"{name}()"), parse_chain(f"{name}()")
        padded = np.pad(audio, ((0, 0), (0, 40 * block)))
        parts = [
            streamed.process(padded[:, i : i + block], SAMPLE_RATE_HZ, block, reset=False)
            for i in range(0, padded.shape[1], block)
        ]
        out = np.concatenate(parts, axis=1)[:, : audio.shape[1]]
        assert np.abs(out).max() > 0, name
        if name not in STREAMS_DIFFERENTLY:
            np.testing.assert_array_equal(out, whole(audio, SAMPLE_RATE_HZ), err_msg=name)


def test_bench_reports_the_cost_of_pre_and_post_chains(capsys) -> None:
    import json

    from rtverb.cli import main

    argv = ["bench", "--ir-seconds", "0.2", "--seconds", "0.5", "--block", "512", "--json"]
    assert main([*argv, "--pre", "HighpassFilter(cutoff_frequency_hz=80)",
                 "--post", "Limiter(threshold_db=-1)"]) == 0  # fmt: skip
    chains = json.loads(capsys.readouterr().out)["chains"]
    assert set(chains) == {"pre", "post"}
    for cost in chains.values():
        assert 0 < cost["p50_us"] <= cost["p999_us"] <= cost["max_us"]
        assert cost["load_mean"] == pytest.approx(cost["mean_us"] / (512 / 48000 * 1e6))
    assert main([*argv, "--pre", "Compresor()"]) == 2
    assert "Did you mean 'Compressor'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Gain(gain_db=" + "9" * 400 + ")", "too large for a number"),
        ("Resample(target_sample_rate=1e12)", "outside 1000..384000 Hz"),
        ("Resample(target_sample_rate=10)", "outside 1000..384000 Hz"),
        ("Phaser(rate_hz=1e12)", "outside 0..100 Hz"),
    ],
)
def test_values_that_overflow_or_leave_sane_ranges_are_refused_by_name(text, fragment) -> None:
    name = text.split("(")[0]
    with pytest.raises(ChainError, match=rf"^{name}\(\w+=\.\.\.\): .*{fragment}"):
        parse_chain(text)


#: Seconds of noise rendered through each plugin (enough for plugins that hold audio back).
PLUGIN_TEST_S = 0.25


@pytest.mark.parametrize("position", ["pre", "post"])
@pytest.mark.parametrize("name", sorted(builtin_plugins()))
def test_every_builtin_plugin_works_before_and_after_the_room(name, position, tmp_path) -> None:
    from pedalboard.io import AudioFile

    from rtverb.offline.render import render_array

    rate = 48000
    if name == "Convolution":
        ir_path = tmp_path / "ir.wav"
        with AudioFile(str(ir_path), "w", rate, 1) as f:
            f.write(np.eye(1, 64, dtype=np.float32))
        plugin_chain = parse_chain(f"Convolution(impulse_response_filename='{ir_path}')")
    else:
        plugin_chain = parse_chain(name)
    frames = int(PLUGIN_TEST_S * rate)
    x = np.random.default_rng(0).standard_normal((2, frames)).astype(np.float32) * 0.1
    ir = np.zeros(256, np.float32)
    ir[0] = 1.0
    y = render_array(x, rate, ir, tail_s=0.05, **{position: plugin_chain})
    assert y.shape == (2, frames + round(0.05 * rate))
    assert np.isfinite(y).all() and np.abs(y).max() > 0
