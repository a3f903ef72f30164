"""Export a trained envelope model to one ONNX file: ``python -m train.export``.

The FNO's complex spectral convolutions are replaced by the same maps in real arithmetic
(`train.model.exportable`), exported with torch's dynamo exporter into a single file (no
external data), and checked against the original torch model on ONNX Runtime. The file
describes itself in its metadata: the values `rtverb.synth.model.expected_metadata` requires
(schema and table hash, features, time grid, bands) and information (training data, commit,
model configuration, evaluation figures once `train.evaluate --stamp` has run).

A model with a room encoder (``--kind encoded``) exports encoder and FNO as one graph with
two inputs (``x``, ``physics``) and two outputs (``fields``, ``heads``); parity covers both.
The batch dimension is dynamic (``batch``): the runtime predicts the envelopes of all source
positions of a true-stereo room in one run; parity covers one room at a time and all at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rtverb.room.room import Room
from rtverb.synth import features
from rtverb.synth.model import (
    CALIBRATION_KEY,
    CHECKSUM_KEY,
    CHECKSUM_PLACEHOLDER,
    MODEL_PATH,
    expected_encoder_metadata,
    expected_metadata,
    model_checksum,
)
from rtverb.synth.physics import RoomPhysics
from train.model import ModelConfig, build, exportable, load_weights

#: Largest |torch - onnxruntime| relative to the largest |output| the export may show. Both run
#: float32; the real-arithmetic DFT sums in another order than torch's FFT (~1e-6 seen).
PARITY_RTOL = 1e-4
#: Most rooms the exported model takes in one run (a true-stereo room needs 2).
MAX_BATCH = 64


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    ckpt = torch.load(path, weights_only=False)
    cfg = ckpt["config"]
    model = build(ModelConfig(**cfg["model"]))
    load_weights(model, ckpt["model"])
    model.eval()
    return model, ckpt


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def set_metadata(path: Path, extra: dict[str, str]) -> None:
    """Add or replace metadata entries of an ONNX file, atomically; stamp its checksum
    (`rtverb.synth.model.CHECKSUM_KEY`) over the result. The weights are not touched."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(extra)
    props[CHECKSUM_KEY] = CHECKSUM_PLACEHOLDER
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    _save_atomic(model, path)


def _stamped(data: bytes) -> bytes:
    """Serialized model bytes with its checksum placeholder replaced by the checksum."""
    digest = model_checksum(data, CHECKSUM_PLACEHOLDER)
    if not digest:
        raise RuntimeError(f"no {CHECKSUM_KEY} placeholder in the serialized model")
    marker = CHECKSUM_KEY.encode() + b"\x12\x40"
    return data.replace(marker + CHECKSUM_PLACEHOLDER.encode(), marker + digest.encode(), 1)


def _save_atomic(model, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        data = model.SerializeToString()
        if any(p.key == CHECKSUM_KEY for p in model.metadata_props):
            data = _stamped(data)
        Path(tmp).write_bytes(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the model from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def parity(
    reference: torch.nn.Module, onnx_path: Path, inputs: np.ndarray, physics: np.ndarray
) -> float:
    """Max |torch - onnxruntime| / max |torch| of the corrections (and heads) over ``inputs``
    (n, C, N) and their ``physics`` features (n, F), one room per run and all n in one run.

    The reference is the trained model as trained (complex spectral convolutions, torch head);
    the ONNX side is the exported network with the runtime's numpy head.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    encoded = [i.name for i in session.get_inputs()] == ["x", "physics"]
    batches = [slice(i, i + 1) for i in range(len(inputs))] + [slice(None)]
    worst = 0.0
    with torch.no_grad():
        for rooms in batches:
            x, f = inputs[rooms], physics[rooms]
            want, want_heads = reference(torch.from_numpy(x), torch.from_numpy(f))
            out = session.run(None, {"x": x, "physics": f} if encoded else {"x": x})
            got = features.correction_db(out[0], x)
            worst = max(worst, _relative(got, want.numpy()))
            if want_heads is not None:
                worst = max(worst, _relative(out[1], want_heads.numpy()))
    return worst


def export(checkpoint: str | Path, out: str | Path = MODEL_PATH, info: dict | None = None) -> float:
    """Export ``checkpoint`` to ``out``; returns the parity error. Raises if above tolerance."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reference, ckpt = load_checkpoint(checkpoint)
    model, _ = load_checkpoint(checkpoint)
    if ckpt["config"]["model"]["kind"] in ("fno", "encoded"):
        model = exportable(model)
    model.eval()
    rng = np.random.default_rng(0)
    from train.datagen import sample_room

    rooms = [RoomPhysics.of(sample_room(rng)) for _ in range(8)]
    inputs = np.stack([features.model_input(p)[0] for p in rooms])
    physics = np.stack([features.physics_features(p) for p in rooms])
    example = RoomPhysics.of(Room())
    x = torch.from_numpy(features.model_input(example)[0][None])
    encoded = ckpt["config"]["model"]["kind"] == "encoded"
    args = (x, torch.from_numpy(features.physics_features(example)[None])) if encoded else (x,)
    args = tuple(torch.cat([a, a]) for a in args)  # a batch of 2: 1 would be specialized
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    names = ["x", "physics"][: len(args)]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        program = torch.onnx.export(
            model.net,
            args,
            dynamo=True,
            external_data=False,
            input_names=names,
            output_names=["fields", "heads"][: len(args)],
            dynamic_shapes={name: {0: batch} for name in names},
        )
        program.save(str(raw))
        error = parity(reference, raw, inputs, physics)
        if error > PARITY_RTOL:
            raise RuntimeError(f"ONNX export differs from torch by {error:.2e} (> {PARITY_RTOL})")
        import onnx

        onnx_model = onnx.load(str(raw))
        _save_atomic(onnx_model, out)
    meta = expected_metadata()
    if encoded:
        meta.update(expected_encoder_metadata())
        meta[CALIBRATION_KEY] = "t30"  # the envelopes' decays follow the T30 heads
    meta.update(
        {
            "rtverb.model_kind": ckpt["config"]["model"]["kind"],
            "rtverb.model_config": json.dumps(ckpt["config"]["model"]),
            "rtverb.training": json.dumps(
                {
                    "data": ckpt["config"]["data"],
                    "rooms_train": ckpt["state"]["n_train"],
                    "rooms_val": ckpt["state"]["n_val"],
                    "seed": ckpt["config"]["seed"],
                    "init": ckpt["config"].get("init"),  # the run it was widened from
                    "best_epoch": ckpt["state"]["best_epoch"],
                    "best_val_loss_db": ckpt["state"]["best_val"],
                }
            ),
            "rtverb.commit": _commit(),
            "rtverb.parity_rel_error": f"{error:.2e}",
            **(info or {}),
        }
    )
    set_metadata(out, meta)
    return error


def export_fno_as_encoded(fno_onnx: str | Path, out: str | Path) -> None:
    """Export an exported FNO again as an encoded model that computes exactly it (zero FiLM,
    Eyring's and Barron's values as heads, trust zero), its calibration off: the ablation row
    of an FNO without the encoder, from a file made before batches were dynamic."""
    import onnx

    from train.fit import FitConfig
    from train.model import ModelConfig, build, load_onnx_fno, weights

    meta = {p.key: p.value for p in onnx.load(str(fno_onnx)).metadata_props}
    saved = json.loads(meta.get("rtverb.model_config", "{}"))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in saved.items() if k in known and k != "kind"})
    cfg.kind = "encoded"
    model = build(cfg)
    load_onnx_fno(model, fno_onnx)
    state = {"n_train": 0, "n_val": 0, "best_epoch": -1, "best_val": float("nan")}
    config = dataclasses.asdict(FitConfig(data=str(fno_onnx), model=cfg))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "fno.pt"
        torch.save({"model": weights(model), "config": config, "state": state}, checkpoint)
        export(checkpoint, out)
    set_metadata(Path(out), {CALIBRATION_KEY: "none"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="runs/fno/best.pt")
    p.add_argument("--out", default=str(MODEL_PATH))
    p.add_argument(
        "--restamp",
        action="store_true",
        help="only write this rtverb's metadata into --out (same weights): after a change to "
        "parameters the model does not see",
    )
    p.add_argument(
        "--from-fno-onnx",
        metavar="FILE",
        help="export this exported FNO (of any batch) again, as an encoded model whose FiLM and "
        "heads are zero and whose calibration is off: exactly that FNO, with a dynamic batch",
    )
    args = p.parse_args(argv)
    if args.from_fno_onnx and Path(args.out) == MODEL_PATH:
        p.error(
            "--from-fno-onnx writes a file for the ablation row: give --out (not the shipped model)"
        )
    if args.from_fno_onnx:
        export_fno_as_encoded(args.from_fno_onnx, args.out)
        print(f"wrote {args.out}: {args.from_fno_onnx} as an encoded model, calibration off")
        return 0
    if args.restamp:
        set_metadata(Path(args.out), expected_metadata())
        print(f"restamped {args.out} with this rtverb's metadata (weights unchanged)")
        return 0
    error = export(args.checkpoint, args.out)
    size_mb = Path(args.out).stat().st_size / 1e6
    print(
        f"wrote {args.out} ({size_mb:.1f} MB); torch vs onnxruntime max relative error {error:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
