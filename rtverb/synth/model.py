"""The envelope model: an ONNX Runtime session on the shipped FNO, and its metadata.

A model reads the model input ``x`` (`rtverb.synth.features.model_input`) and returns the
envelope's ``fields``. A model with a room encoder also reads ``physics``
(`rtverb.synth.features.physics_features`) and returns ``heads``: each band's T30 (s), EDT (s)
and C50 (dB). A model whose metadata names the ``t30`` calibration has each envelope's decay
set to its T30 head (`rtverb.synth.calibrate`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rtverb.room.params import SCHEMA_VERSION, table_hash
from rtverb.synth import features
from rtverb.synth.calibrate import apply_tilt, tilt_db_s
from rtverb.synth.physics import MODEL_BANDS_HZ, RoomPhysics

MODEL_PATH = Path(__file__).parent / "models" / "rir_fno.onnx"
#: ONNX metadata a model must carry, with the values this runtime expects.
FEATURE_VERSION = 3
#: Metadata key of the model's checksum: SHA-256 (hex) of the file's bytes with this value
#: written as 64 zeros; it covers the weights, the graph and the other metadata.
CHECKSUM_KEY = "rtverb.sha256"
CHECKSUM_PLACEHOLDER = "0" * 64
#: Metadata key of what the envelopes are calibrated to: "t30", the encoder's T30 heads.
CALIBRATION_KEY = "rtverb.calibration"


class ModelError(RuntimeError):
    """The model file is missing, unreadable or does not match this version of rtverb."""


def expected_metadata() -> dict[str, str]:
    """Metadata keys whose values must match between a model file and this runtime."""
    return {
        "rtverb.schema_version": str(SCHEMA_VERSION),
        "rtverb.table_hash": table_hash(),
        "rtverb.feature_version": str(FEATURE_VERSION),
        "rtverb.n_frames": str(features.N_FRAMES),
        "rtverb.frame_s": str(features.FRAME_S),
        "rtverb.bands_hz": json.dumps(list(MODEL_BANDS_HZ)),
        "rtverb.n_input_channels": str(features.N_INPUT_CHANNELS),
    }


def expected_encoder_metadata() -> dict[str, str]:
    """Metadata keys a model with a room encoder (a ``physics`` input) must also match."""
    return {
        "rtverb.physics_version": str(features.PHYSICS_VERSION),
        "rtverb.n_physics_features": str(features.N_PHYSICS_FEATURES),
    }


def model_checksum(data: bytes, stored: str) -> str:
    """SHA-256 (hex) of a model file's bytes with its stored checksum ``stored`` zeroed; "" if
    the file does not hold ``stored`` as its `CHECKSUM_KEY` entry.

    In the ONNX protobuf, a metadata entry is its key (field 1) then its value (field 2, tag
    0x12, here 64 bytes long: 0x40), so the stored value follows ``key + b"\x12\x40"``.
    """
    marker = CHECKSUM_KEY.encode() + b"\x12\x40"
    at = data.find(marker + stored.encode()) if len(stored) == 64 else -1
    if at < 0:
        return ""
    start = at + len(marker)
    zeroed = data[:start] + CHECKSUM_PLACEHOLDER.encode() + data[start + 64 :]
    return hashlib.sha256(zeroed).hexdigest()


class Synthesizer:
    """An ONNX Runtime session on the envelope model; load once, call from any one thread.

    Raises:
        ModelError: the file is missing, corrupt, was made for another parameter table,
            feature set or time grid, or its bytes do not match its checksum (weights changed;
            the message names the file and the mismatch).
    """

    def __init__(self, model_path: str | Path = MODEL_PATH) -> None:
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(
                f"{self.path}: model file not found; reinstall rtverb or export one with "
                "`python -m train.export`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # leave the other core to the audio thread
        options.inter_op_num_threads = 1
        data = self.path.read_bytes()  # the bytes checked are the bytes loaded
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises several private exception types
            raise ModelError(f"{self.path}: not a readable ONNX model ({e})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = [i.name for i in self.session.get_inputs()]
        self.encoded = "physics" in inputs
        expected = expected_metadata()
        if self.encoded:
            expected.update(expected_encoder_metadata())
        for key, want in expected.items():
            got = self.metadata.get(key)
            if got != want:
                raise ModelError(
                    f"{self.path}: model does not match this rtverb: {key} is {got!r}, "
                    f"expected {want!r}; export a model with this version "
                    "(`python -m train.export`)"
                )
        stored = self.metadata.get(CHECKSUM_KEY, "")
        got = model_checksum(data, stored)
        if not stored or got != stored:
            raise ModelError(
                f"{self.path}: model does not match its checksum: {CHECKSUM_KEY} is {stored!r}, "
                f"the file hashes to {got or 'nothing (no checksum entry)'!r}; its weights were "
                "changed or it is damaged: reinstall rtverb or export a model "
                "(`python -m train.export`)"
            )
        if isinstance(self.session.get_inputs()[0].shape[0], int):
            raise ModelError(
                f"{self.path}: the model takes a fixed batch of rooms; export it again with a "
                "dynamic batch (`python -m train.export`)"
            )
        self._input = inputs[0]
        #: Calibrate each envelope's decay to the T30 head (the model's metadata asks for it;
        #: `train.evaluate` turns it off for its ablation row).
        self.calibrate = self.encoded and self.metadata.get(CALIBRATION_KEY) == "t30"

    def envelope_db(self, physics: RoomPhysics) -> np.ndarray:
        """Predicted late energy envelope, (8 bands, N_FRAMES) dB per 4 ms bin."""
        return self.envelopes_db([physics])[0]

    def envelopes_db(self, rooms: Sequence[RoomPhysics]) -> list[np.ndarray]:
        """`envelope_db` of each room, from one run of the model on them as a batch (the
        source positions of a true-stereo room cost less than a run each); several rooms (the
        points of a spread source) share the first one's calibration."""
        return self.envelopes_and_c50_db(rooms)[0]

    def envelopes_and_c50_db(
        self, rooms: Sequence[RoomPhysics]
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """`envelopes_db`, and the room encoder's C50 per room and band (rooms, 8) dB that the
        renderer blends the first 50 ms with (`rtverb.synth.equalize`), or None for a model
        not calibrated to its heads."""
        feeds, baselines = self.feeds(*rooms)
        fields, heads = self._outputs(feeds)
        x = feeds[self._input]
        envelopes = [
            self._envelope_db(p, x[i], baselines[i], fields[i]) for i, p in enumerate(rooms)
        ]
        if heads is None:
            return envelopes, None
        return self._calibrated(rooms, envelopes, heads[0]), heads[:, 2]

    @staticmethod
    def _calibrated(
        rooms: Sequence[RoomPhysics], envelopes: list[np.ndarray], heads: np.ndarray
    ) -> list[np.ndarray]:
        """``envelopes`` with their decays set to the first room's T30 ``heads`` (3, 8): the
        points of a spread source are one room but for the source position, which barely
        moves T30, so they share its calibration (one search, not one each)."""
        early = [features.early_energy(p) for p in rooms]
        tilt = tilt_db_s(envelopes[0], early[0], heads[0])
        return [apply_tilt(e, energy, tilt) for e, energy in zip(envelopes, early, strict=True)]

    def feeds(self, *rooms: RoomPhysics) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's inputs for ``rooms`` (a batch), and their analytic envelopes
        (rooms, 8, N_FRAMES) dB."""
        inputs = [features.model_input(p) for p in rooms]
        feeds = {self._input: np.stack([x for x, _ in inputs])}
        if self.encoded:
            feeds["physics"] = np.stack([features.physics_features(p) for p in rooms])
        return feeds, np.stack([baseline for _, baseline in inputs])

    def heads(self, physics: RoomPhysics) -> np.ndarray:
        """The room encoder's T30 (s), EDT (s) and C50 (dB) per band, (3, 8).

        Raises:
            ModelError: the model has no room encoder.
        """
        if not self.encoded:
            raise ModelError(f"{self.path}: the model has no room encoder (no heads)")
        heads: np.ndarray = self.session.run(["heads"], self.feeds(physics)[0])[0][0]
        return heads

    def _outputs(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """The network's output fields (rooms, 16, N_FRAMES) for `feeds`, and its heads
        (rooms, 3, 8) when the envelopes are calibrated to them (else None)."""
        if not self.calibrate:
            return self.session.run(["fields"], feeds)[0], None
        fields, heads = self.session.run(["fields", "heads"], feeds)
        return fields, heads

    def _envelope_db(
        self, physics: RoomPhysics, x: np.ndarray, baseline: np.ndarray, fields: np.ndarray
    ) -> np.ndarray:
        """The envelope, not calibrated, from the model input, the analytic envelope and the
        network's fields."""
        if not np.all(np.isfinite(fields)):  # inputs are finite and clipped: a broken file
            name = physics.room.name
            raise ModelError(f"{self.path}: the model returned NaN or Inf for {name!r}")
        correction = features.correction_db(fields, x)
        envelope = np.maximum(baseline + correction, features.FLOOR_DB)
        # nothing arrives before the direct sound (the analytic envelope is silent there too)
        envelope[:, baseline.max(axis=0) <= features.FLOOR_DB] = features.FLOOR_DB
        return envelope


_default: Synthesizer | None = None
_default_lock = threading.Lock()


def default_synthesizer() -> Synthesizer:
    """The shipped model, loaded once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Synthesizer()
        return _default
