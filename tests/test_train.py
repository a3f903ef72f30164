"""The training code path on a tiny generated set: datagen -> fit -> export -> runtime."""

import json
import logging

import numpy as np
import pytest

pytest.importorskip("pyroomacoustics")
torch = pytest.importorskip("torch")

from rtverb.synth import ModelError, Synthesizer, features  # noqa: E402
from rtverb.synth.calibrate import decay_times_s, edc_db  # noqa: E402
from rtverb.synth.physics import RoomPhysics  # noqa: E402
from train import datagen  # noqa: E402
from train.dataset import load_shards  # noqa: E402
from train.export import PARITY_RTOL, export, set_metadata  # noqa: E402
from train.fit import FitConfig, fit  # noqa: E402
from train.model import (  # noqa: E402
    ModelConfig,
    build,
    load_onnx_fno,
    load_widened_weights,
    weights,
)

#: Few rays keep the tiny set fast; the code path is what is tested here, not label quality.
TINY = ["--ray-factor", "0.1", "--workers", "1", "--shard-size", "2"]
TINY_FNO = ModelConfig(width=8, modes=8, layers=2)
TINY_ENCODED = ModelConfig(
    kind="encoded", width=8, modes=8, layers=2, encoder_hidden=16, head_hidden=16, head_members=2
)


def _tiny_fit(out, epochs: int, model: ModelConfig = TINY_FNO) -> FitConfig:
    return FitConfig(out=str(out), epochs=epochs, batch_size=2, val_fraction=0.25, model=model)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert datagen.main(["--rooms", "4", "--seed", "3", "--out", str(out), *TINY]) == 0
    return out


def test_sampled_rooms_are_inside_the_domain_and_seeded():
    for i in range(20):
        a = datagen.sample_room(np.random.default_rng([7, i]))
        assert a.domain_warnings() == []
        assert a == datagen.sample_room(np.random.default_rng([7, i]))


def test_shards_hold_the_documented_arrays(tiny_set):
    shards = sorted(tiny_set.glob("shard_*.npz"))
    assert [p.name for p in shards] == ["shard_00000.npz", "shard_00001.npz"]
    with np.load(shards[0]) as shard:
        assert shard["hist"].shape == (2, 8, 1000) and shard["hist"].dtype == np.float32
        assert shard["T30_s"].shape == (2, 1, 7)
        assert list(shard["index"]) == [0, 1]
        json.loads(str(shard["room_json"][0]))
    assert not list(tiny_set.glob("*.partial"))


def test_rerun_skips_finished_shards(tiny_set):
    before = {p: p.stat().st_mtime_ns for p in tiny_set.glob("shard_*.npz")}
    assert datagen.main(["--rooms", "4", "--seed", "3", "--out", str(tiny_set), *TINY]) == 0
    assert {p: p.stat().st_mtime_ns for p in tiny_set.glob("shard_*.npz")} == before


def test_same_seed_same_data(tmp_path):
    datagen.run_shard(str(tmp_path), 0, 1, 1, 3, 1, 0.1, False)
    again = tmp_path / "again"
    again.mkdir()
    datagen.run_shard(str(again), 0, 1, 1, 3, 1, 0.1, False)
    with np.load(tmp_path / "shard_00000.npz") as a, np.load(again / "shard_00000.npz") as b:
        np.testing.assert_array_equal(a["hist"], b["hist"])
        np.testing.assert_array_equal(a["T30_s"], b["T30_s"])


def test_interrupted_shard_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datagen.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        datagen.run_shard(str(tmp_path), 0, 1, 1, 3, 1, 0.1, False)
    assert list(tmp_path.iterdir()) == []


def test_a_room_the_simulator_rejects_is_logged_and_skipped(tmp_path, monkeypatch, caplog):
    import train.simulate

    real = train.simulate.simulate
    calls = []

    def flaky(room, seed, **kwargs):
        calls.append(seed)
        if len(calls) == 1:
            raise ValueError("simulated failure")
        return real(room, seed, **kwargs)

    monkeypatch.setattr(train.simulate, "simulate", flaky)
    with caplog.at_level(logging.ERROR):
        assert datagen.run_shard(str(tmp_path), 0, 2, 2, 3, 1, 0.1, False) == 1
    assert "room 0 skipped" in caplog.text
    with np.load(tmp_path / "shard_00000.npz") as shard:
        assert list(shard["index"]) == [1]


def test_dask_cluster_runs_the_same_job(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        args = [
            "--rooms",
            "2",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
            "--scheduler",
            cluster.scheduler_address,
            *TINY,
        ]
        assert datagen.main(args) == 0
    with np.load(tmp_path / "shard_00000.npz") as shard:
        assert list(shard["index"]) == [0, 1]


#: A room's envelope in a batch of two vs alone (dB): the batched matrix products may sum in
#: another order in float32 (the shipped model: ~1e-5 dB).
BATCH_ATOL_DB = 1e-3


def test_fit_resume_export_and_run(tiny_set, tmp_path):
    data = load_shards(tiny_set)
    cfg = _tiny_fit(tmp_path / "run", epochs=2)
    state = fit(cfg, data=data, log=lambda s: None)
    assert state["epoch"] == 2 and np.isfinite(state["best_val"])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    messages = []
    cfg.epochs = 3
    state = fit(cfg, data=data, log=messages.append)
    assert state["epoch"] == 3 and "resumed" in messages[0]
    # fine-tuning on other data: the old best does not compare, best and patience start over
    cfg.epochs, messages = 4, []
    state = fit(cfg, data=data.subset(np.arange(len(data) - 1)), log=messages.append)
    assert "data changed" in messages[1] and state["best_epoch"] == 4
    model_path = tmp_path / "tiny.onnx"
    error = export(tmp_path / "run" / "best.pt", model_path)
    assert error <= PARITY_RTOL
    synth = Synthesizer(model_path)
    rooms = [RoomPhysics.of(r) for r in data.rooms[:2]]
    envelope = synth.envelope_db(rooms[0])
    assert envelope.shape == data.target_db[0].shape and np.all(np.isfinite(envelope))
    # the batch is dynamic: two rooms in one run are the two rooms one at a time
    for got, room in zip(synth.envelopes_db(rooms), rooms, strict=True):
        np.testing.assert_allclose(got, synth.envelope_db(room), rtol=0, atol=BATCH_ATOL_DB)
    # a wider run starts from the trained narrow one (`--init`)
    wide = FitConfig(**{**vars(cfg), "out": str(tmp_path / "wide"), "epochs": 1})
    wide.init = str(tmp_path / "run" / "best.pt")
    wide.model = ModelConfig(width=12, modes=8, layers=2)
    messages = []
    assert fit(wide, data=data, log=messages.append)["epoch"] == 1
    assert messages[0].startswith("started from the function of")


#: Six epochs on the tiny set (seeded, no augmentation, no warm-up) take the training loss from
#: 56 to 40 (measured); falling below this fraction of the first epoch's shows it learns.
LOSS_FALL_FRACTION = 0.85


def test_the_loss_falls(tiny_set, tmp_path):
    cfg = FitConfig(
        out=str(tmp_path / "run"),
        epochs=6,
        batch_size=2,
        val_fraction=0.25,
        lr=3e-3,
        warmup_epochs=0,
        augment=False,
        model=ModelConfig(width=8, modes=8, layers=2),
    )
    history = fit(cfg, data=load_shards(tiny_set), log=lambda s: None)["history"]
    assert history["train"][-1] < LOSS_FALL_FRACTION * history["train"][0], history
    assert history["val"][-1] < history["val"][0], history


#: float32 sums over more (zero) terms in another order: the widened output may differ by this.
WIDENING_ATOL = 1e-5


def test_widening_keeps_the_function_and_opens_the_new_channels():
    torch.manual_seed(0)
    narrow, wide = build(ModelConfig(width=8, modes=8)), build(ModelConfig(width=12, modes=8))
    load_widened_weights(wide, weights(narrow), "narrow.pt")
    x = torch.randn(2, wide.net.in_channels, 64)
    with torch.no_grad():
        assert torch.allclose(wide(x)[0], narrow(x)[0], atol=WIDENING_ATOL)
    wide(x)[0].square().mean().backward()  # what a new channel sends the old ones must learn
    grad = wide.net.fno_blocks.fno_skips[0].conv.weight.grad
    assert grad[:8, 8:].abs().max() > 0
    with pytest.raises(SystemExit, match="can only be widened"):
        load_widened_weights(narrow, weights(wide), "wide.pt")
    gru = build(ModelConfig(kind="gru", gru_hidden=8))  # stacked gates: no channel layout
    with pytest.raises(SystemExit, match="only an FNO"):
        load_widened_weights(gru, weights(gru), "gru.pt")


#: An encoded model started from an exported FNO equals it: float32 torch vs onnxruntime,
#: sums in another order (~3e-5 dB seen on 50 dB corrections).
WARM_START_ATOL_DB = 1e-3


@pytest.fixture(scope="module")
def tiny_fno_onnx(tiny_set, tmp_path_factory):
    """A plain FNO trained one epoch on the tiny set and exported."""
    out = tmp_path_factory.mktemp("fno")
    cfg = _tiny_fit(out, epochs=1)
    fit(cfg, data=load_shards(tiny_set), log=lambda s: None)
    export(out / "best.pt", out / "fno.onnx")
    return out / "fno.onnx"


def test_a_new_encoded_model_is_its_fno_with_eyrings_times(tiny_set, tiny_fno_onnx):
    data = load_shards(tiny_set)
    model = build(TINY_ENCODED)
    load_onnx_fno(model, tiny_fno_onnx)
    model.eval()
    x, physics = torch.from_numpy(data.x), torch.from_numpy(data.physics)
    with torch.no_grad():
        correction, heads = model(x, physics)
    plain = Synthesizer(tiny_fno_onnx)
    for i in range(len(data)):
        want = features.correction_db(plain._outputs({"x": data.x[i : i + 1]})[0][0], data.x[i])
        np.testing.assert_allclose(correction[i].numpy(), want, rtol=0, atol=WARM_START_ATOL_DB)
    eyring = np.exp(data.physics[:, features.EYRING_LOG_S])
    np.testing.assert_allclose(heads[:, 0].numpy(), eyring, rtol=1e-6)
    np.testing.assert_allclose(heads[:, 1].numpy(), eyring, rtol=1e-6)
    np.testing.assert_allclose(heads[:, 2].numpy(), data.physics[:, features.BARRON_C50_DB])


def test_an_fno_exports_again_as_an_encoded_model_without_calibration(
    tiny_set, tiny_fno_onnx, tmp_path
):
    from train.export import export_fno_as_encoded

    export_fno_as_encoded(tiny_fno_onnx, tmp_path / "as_encoded.onnx")
    again, plain = Synthesizer(tmp_path / "as_encoded.onnx"), Synthesizer(tiny_fno_onnx)
    assert again.encoded and not again.calibrate
    for room in load_shards(tiny_set).rooms:
        physics = RoomPhysics.of(room)
        np.testing.assert_allclose(
            again.envelope_db(physics), plain.envelope_db(physics), atol=WARM_START_ATOL_DB
        )


def test_encoded_model_fits_exports_and_gives_heads(tiny_set, tiny_fno_onnx, tmp_path):
    data = load_shards(tiny_set)
    cfg = _tiny_fit(tmp_path / "run", epochs=2, model=TINY_ENCODED)
    cfg.balance, cfg.init_onnx, cfg.heads_epochs = True, str(tiny_fno_onnx), 2
    messages: list[str] = []
    state = fit(cfg, data=data, log=messages.append)
    assert any(m.startswith("heads epoch 2") for m in messages)
    # the heads, trained alone, are frozen: the joint optimizer holds every other parameter
    optimizer = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["optimizer"]
    held = sum(len(group["params"]) for group in optimizer["param_groups"])
    model = build(TINY_ENCODED)
    assert held == len(list(model.parameters())) - len(list(model.net.heads.parameters())) > 0
    assert set(state["term_weights"]) == {
        "envelope",
        "edc",
        "rates",
        "buildup",
        "T30",
        "EDT",
        "C50",
    }
    assert messages[0].startswith("started the FNO as") and "terms at the start" in messages[1]
    path = tmp_path / "encoded.onnx"
    assert export(tmp_path / "run" / "best.pt", path) <= PARITY_RTOL
    synth = Synthesizer(path)
    physics = RoomPhysics.of(data.rooms[0])
    heads = synth.heads(physics)
    assert synth.encoded and heads.shape == (3, features.N_BANDS) and np.all(heads[:2] > 0)
    # the envelope's decays are calibrated to the T30 heads: closer to them than the FNO's own
    assert synth.calibrate
    calibrated = synth.envelope_db(physics)
    synth.calibrate = False
    plain = synth.envelope_db(physics)
    early = features.early_energy(physics)
    misses = [
        np.abs(np.log(decay_times_s(edc_db(e, early), -5.0, -35.0) / heads[0, :7]))
        for e in (calibrated, plain)
    ]
    assert np.all(np.isfinite(calibrated)) and np.all(misses[0] <= misses[1] + 1e-9)
    assert misses[0].sum() < misses[1].sum()
    with pytest.raises(ModelError, match="no room encoder"):
        Synthesizer(tiny_fno_onnx).heads(physics)
    set_metadata(path, {"rtverb.physics_version": "0"})
    with pytest.raises(ModelError, match="physics_version"):
        Synthesizer(path)


def test_noise_floor_compares_two_runs_of_the_same_rooms(tiny_set, tmp_path):
    from train.noise_floor import noise_floor

    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--rooms", "2", "--seed", "3", *TINY]
    assert datagen.main([*args, "--out", str(one)]) == 0
    assert datagen.main([*args, "--out", str(two), "--runs", "2"]) == 0
    terms = noise_floor(str(one), str(two))
    assert set(terms) == {"envelope", "edc", "rates", "buildup", "T30", "EDT", "C50"}
    assert all(np.isfinite(v) and v >= 0 for v in terms.values())
    assert terms["envelope"] > 0  # two ray-tracing runs differ
    with pytest.raises(SystemExit, match="simulated twice"):
        noise_floor(str(one), str(one))


def test_the_one_run_row_is_a_default_simulation_apart_from_the_truth(tiny_set, monkeypatch):
    """`train.evaluate`'s one-run row: one more run per room, with the default rays and a seed
    none of the shipped truth's runs used (`datagen --seed 2`, 104 rooms, 4 runs)."""
    from train import evaluate
    from train import simulate as simulator

    data = load_shards(str(tiny_set))
    calls, real = [], simulator.simulate

    def recording(room, seed, ray_factor=1.0, **kwargs):
        calls.append((seed, ray_factor))
        return real(room, seed, ray_factor=0.1, **kwargs)  # few rays: which run is tested here

    monkeypatch.setattr(simulator, "simulate", recording)
    one, _ = evaluate.one_default_run(data)
    assert [factor for _, factor in calls] == [1.0] * len(data)
    assert len({seed for seed, _ in calls}) == len(data)
    truth_seeds = {
        int(np.random.default_rng([2, i, run]).integers(2**31))
        for i in range(104)
        for run in range(4)
    }
    assert not truth_seeds & {evaluate.ONE_RUN_SEED + i for i in range(104)}
    assert one["C50_db"].shape == data.metrics["C50_db"][:, 0].shape
    assert np.all(np.isfinite(one["C50_db"]))
    assert not np.allclose(one["C50_db"], data.metrics["C50_db"][:, 0])  # not the truth's run 0
