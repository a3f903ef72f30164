"""The envelope models: a neuraloperator FNO along time (ours), the same FNO conditioned on a
room encoder (``encoded``), and a GRU (the baseline).

All map the input channels of `rtverb.synth.features.model_input` (C, N_FRAMES) to 16 fields
along time, which `rtverb.synth.features.correction_db` turns into a correction (8 bands, N_FRAMES)
in dB added to the analytic envelope. The ONNX file holds the network (the fields); the
runtime applies that two-line head in numpy. `exportable` turns a trained FNO into the same
function in real arithmetic (ONNX has no complex tensors).

The encoded model (`EncodedFNO`) also reads the room's physics features
(`rtverb.synth.features.physics_features`): an MLP over them scales and shifts every FNO
layer's channels (FiLM) and has heads for each band's T30, EDT and C50. The T30 head anchors
the envelope: a learned trust per band moves each band's decay rescaling (the mean of the g
fields) from the FNO's own towards the head's; the FNO shapes onset, curvature and bends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rtverb.synth import features


@dataclass
class ModelConfig:
    kind: str = "fno"  # "fno", "encoded" (FNO + room encoder) or "gru"
    width: int = 32
    modes: int = 32  # Fourier modes kept along time (FNO); neuralop keeps modes // 2 + 1
    layers: int = 4
    gru_hidden: int = 64
    encoder_hidden: int = 128
    head_hidden: int = 256  # the heads: an ensemble of MLPs over the physics features
    head_layers: int = 3
    head_members: int = 4


#: Order of the encoder's heads: (batch, HEADS, bands).
HEADS = ("T30_s", "EDT_s", "C50_db")
#: The C50 head's raw output is in units of this many dB.
C50_SCALE_DB = 10.0
#: The T30 head may shorten a band's analytic decay rate at most to this fraction of it.
MIN_DECAY_SCALE = 0.1


class EnvelopeModel(nn.Module):
    """x (batch, C, N_FRAMES) [and physics (batch, F)] -> correction (batch, 8, N_FRAMES) dB
    as in the runtime, and the encoder's heads (batch, 3, 8) (None without an encoder)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def encoded(self) -> bool:
        return isinstance(self.net, EncodedFNO)

    def forward(
        self, x: torch.Tensor, physics: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        heads = None
        if isinstance(self.net, EncodedFNO):
            if physics is None:
                raise ValueError("the encoded model needs the physics features")
            y, heads = self.net(x, physics)
        else:
            y = self.net(x)
        n = features.N_BANDS
        analytic_db = features.BASELINE_SCALE_DB * x[:, 2 : 2 + n]
        scale = y[:, n:].mean(dim=-1, keepdim=True)
        return features.OUTPUT_SCALE_DB * y[:, :n] + scale * analytic_db, heads


class HeadEnsemble(nn.Module):
    """``members`` MLPs (``layers`` GELU layers of ``hidden``) from the standardized physics
    features to the heads' raw values (batch, 3 x 8); the output is their mean.

    Trained alone on the heads' labels (`train.fit.pretrain_heads`), each member on its own
    loss: the mean of independently trained members generalizes better than one (0.5 points
    of T30 on the held-out truth). The last layers start at zero (Eyring's and Barron's values).
    """

    def __init__(self, n_in: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.nets = nn.ModuleList()
        for _ in range(cfg.head_members):
            layers: list[nn.Module] = []
            width = n_in
            for _ in range(cfg.head_layers):
                layers += [nn.Linear(width, cfg.head_hidden), nn.GELU()]
                width = cfg.head_hidden
            last = nn.Linear(width, len(HEADS) * features.N_BANDS)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.nets.append(nn.Sequential(*layers, last))

    def members(self, z: torch.Tensor) -> torch.Tensor:
        """Each member's raw values, (members, batch, 3 x 8)."""
        return torch.stack([net(z) for net in self.nets])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.members(z).mean(dim=0)


class EncodedFNO(nn.Module):
    """An FNO whose layers a room encoder conditions (FiLM), with heads for T30, EDT and C50.

    ``forward(x, physics)`` -> (fields (batch, 16, N_FRAMES), heads (batch, 3, 8) in seconds,
    seconds and dB). The features are standardized with fixed statistics
    (`set_feature_statistics`, the training set's); the encoder is two GELU layers, the heads a
    `HeadEnsemble` beside it. Heads: T30 and EDT
    as the Eyring time (with air) times exp(head), C50 as Barron's plus C50_SCALE_DB x head.
    FiLM after FNO layer i: h * (1 + gamma_i) + beta_i per channel. The FiLM and head layers
    start at zero and the trust at zero: a new model is exactly its FNO, with Eyring's times
    as heads.

    Anchoring: an envelope's decay rate with air is its rate without air plus the air's (the
    renderer adds it), so the T30 head's rate without air, relative to the analytic envelope's,
    is 1 + T_e (1 / T30 - 1 / T_e,air) with T_e Eyring's without air. That minus one, the
    anchor, is what the time mean of the g fields (the decay rescaling of `correction_db`)
    would be if the head's T30 were taken as it is; a learned trust per band moves the FNO's
    own mean that far towards it (0: the FNO's decay, 1: the head's). The FNO's c fields shape
    the envelope around that decay.
    """

    def __init__(self, fno: nn.Module, cfg: ModelConfig) -> None:
        super().__init__()
        self.fno = fno
        self.layers, self.width = cfg.layers, cfg.width
        n_in, hidden, n = features.N_PHYSICS_FEATURES, cfg.encoder_hidden, features.N_BANDS
        self.register_buffer("feature_mean", torch.zeros(n_in))
        self.register_buffer("feature_std", torch.ones(n_in))
        self.encoder = nn.Sequential(
            nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.heads = HeadEnsemble(n_in, cfg)
        self.film = nn.Linear(hidden, 2 * cfg.layers * cfg.width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.trust = nn.Parameter(torch.zeros(n))  # per band: 0 the FNO's decay, 1 the head's

    def set_feature_statistics(self, physics: torch.Tensor) -> None:
        """Standardize the features by these rooms' mean and standard deviation (n, F)."""
        self.feature_mean.copy_(physics.mean(0))
        self.feature_std.copy_(physics.std(0).clamp(min=1e-3))

    def standardized(self, physics: torch.Tensor) -> torch.Tensor:
        return (physics - self.feature_mean) / self.feature_std

    def head_values(self, raw: torch.Tensor, physics: torch.Tensor) -> torch.Tensor:
        """The heads (batch, 3, 8) in seconds, seconds and dB from the head layer's output."""
        raw = raw.reshape(-1, len(HEADS), features.N_BANDS)
        eyring = torch.exp(physics[:, features.EYRING_LOG_S])
        return torch.stack(
            [
                eyring * torch.exp(raw[:, 0]),
                eyring * torch.exp(raw[:, 1]),
                physics[:, features.BARRON_C50_DB] + C50_SCALE_DB * raw[:, 2],
            ],
            dim=1,
        )

    def forward(self, x: torch.Tensor, physics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = features.N_BANDS
        z = self.standardized(physics)
        h = self.encoder(z)
        heads = self.head_values(self.heads(z), physics)
        t30 = heads[:, 0]
        eyring = torch.exp(physics[:, features.EYRING_LOG_S])
        eyring_no_air = torch.exp(physics[:, features.EYRING_NO_AIR_LOG_S])
        film = self.film(h).reshape(-1, self.layers, 2, self.width, 1)
        y = self.fno.lifting(x)
        for i in range(self.layers):
            y = self.fno.fno_blocks(y, i)
            y = y * (1 + film[:, i, 0]) + film[:, i, 1]
        fields = self.fno.projection(y)
        anchor = torch.clamp(eyring_no_air * (1 / t30 - 1 / eyring), min=MIN_DECAY_SCALE - 1)
        g = fields[:, n:]
        g = g + (self.trust * (anchor - g.mean(dim=-1)))[:, :, None]
        return torch.cat([fields[:, :n], g], dim=1), heads


class GRUNet(nn.Module):
    """A bidirectional GRU over frames: the recurrent baseline of the original design."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_channels, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x.transpose(1, 2))
        return self.head(y).transpose(1, 2)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without neuralop's ``_metadata`` entry (not a tensor)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("_metadata")}


def load_weights(model: nn.Module, state: dict) -> None:
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("_metadata")})


def _in_out_dims(key: str) -> tuple[int | None, int]:
    """(input-channel dim or None, output-channel dim) of a saved FNO tensor."""
    if key.endswith("weight.tensor"):  # neuralop spectral weights: (in, out, modes)
        return 0, 1
    if "channel_mlp_skips" in key:  # per-channel gating: (1, channels, 1)
        return None, 1
    if key.endswith("bias"):
        return None, 0
    return 1, 0  # 1x1 convolutions: (out, in, 1)


def load_widened_weights(model: nn.Module, state: dict, where: object) -> None:
    """Start a wider FNO as exactly the narrower saved one (function-preserving growth).

    Saved weights fill the leading channels. New channels keep ``model``'s random
    initialization for what they receive, and what they send to the saved channels starts at
    zero, so the output is unchanged and training opens the new paths (Net2Net-style).
    """
    own = weights(model)
    state = {k: v for k, v in state.items() if not k.endswith("_metadata")}
    if set(own) != set(state) or any(".gru." in key for key in own):
        raise SystemExit(f"{where}: only an FNO with the same --layers can be widened")
    grown = {}
    for key, old in state.items():
        new = own[key].clone()
        if new.ndim != old.ndim or any(n < o for n, o in zip(new.shape, old.shape, strict=True)):
            raise SystemExit(
                f"{where}: {key} has shape {tuple(old.shape)}, the model {tuple(new.shape)}; "
                "a model can only be widened (use a --width at least the saved one)"
            )
        in_dim, out_dim = _in_out_dims(key)
        new[tuple(slice(0, n) for n in old.shape)] = old
        if in_dim is not None and new.shape[in_dim] > old.shape[in_dim]:
            index: list[slice] = [slice(None)] * new.ndim
            index[in_dim] = slice(old.shape[in_dim], None)
            index[out_dim] = slice(0, old.shape[out_dim])
            new[tuple(index)] = 0
        grown[key] = new
    load_weights(model, grown)


def build(cfg: ModelConfig) -> EnvelopeModel:
    if cfg.kind == "gru":
        return EnvelopeModel(
            GRUNet(features.N_INPUT_CHANNELS, cfg.gru_hidden, 2 * features.N_BANDS)
        )
    if cfg.kind not in ("fno", "encoded"):
        raise ValueError(f"unknown model kind {cfg.kind!r}; use 'fno', 'encoded' or 'gru'")
    from neuralop.models import FNO

    net = FNO(
        n_modes=(cfg.modes,),
        in_channels=features.N_INPUT_CHANNELS,
        out_channels=2 * features.N_BANDS,
        hidden_channels=cfg.width,
        n_layers=cfg.layers,
        positional_embedding=None,  # the inputs carry their own time coordinates
    )
    if cfg.kind == "fno":
        return EnvelopeModel(net)
    _real_spectral_convs(net)  # trained in the real form it is exported in
    return EnvelopeModel(EncodedFNO(net, cfg))


def load_onnx_fno(model: EnvelopeModel, path: str | Path) -> None:
    """Start an encoded model's FNO as the FNO of an exported ``fno`` model (an ONNX file).

    The exporter keeps the FNO's tensors under their names, except the spectral weights, which
    it folds into constants permuted to (modes, in, out): real then imaginary part per layer,
    in layer order.
    """
    import onnx
    from onnx import numpy_helper

    if not isinstance(model.net, EncodedFNO):
        raise SystemExit("--init-onnx starts an encoded model (--kind encoded)")
    fno = model.net.fno
    own = fno.state_dict()
    tensors = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    shape = (fno.fno_blocks.convs[0].w_re.shape[2], *fno.fno_blocks.convs[0].w_re.shape[:2])
    spectral = sorted(
        (k for k, v in tensors.items() if k.startswith("permute_") and v.shape == shape),
        key=lambda k: int(k.split("_")[1]),
    )
    if len(spectral) != 2 * model.net.layers:
        raise SystemExit(f"{path}: not an FNO of this --width, --modes and --layers")
    state = {}
    for key, value in own.items():
        conv = key.split(".")
        if key.endswith((".w_re", ".w_im")):
            i = int(conv[2]) * 2 + (key.endswith(".w_im"))
            state[key] = torch.from_numpy(tensors[spectral[i]].copy()).permute(1, 2, 0)
        elif key in tensors:
            state[key] = torch.from_numpy(tensors[key].copy()).reshape(value.shape)
        elif not key.endswith("_metadata"):
            raise SystemExit(f"{path}: has no tensor {key}; not an FNO of this configuration")
    fno.load_state_dict({**own, **state})


class RealSpectralConv1d(nn.Module):
    """neuralop's 1-D SpectralConv in real arithmetic: truncated DFTs as matrix products.

    rfft (norm="forward") keeps K modes: X = x @ (cos - i sin) / N; the complex weights
    W (in, out, K) mix channels per mode; the inverse is y = Re(Y) @ c cos - Im(Y) @ c sin with
    c = 1 for the DC mode and 2 for the others (Hermitian symmetry), as irfft does.
    """

    def __init__(self, conv: nn.Module, n: int) -> None:
        super().__init__()
        weight = conv.weight
        weight = weight.to_tensor() if hasattr(weight, "to_tensor") else weight
        weight = torch.as_tensor(weight).detach()
        k_modes = weight.shape[-1]
        self.w_re = nn.Parameter(weight.real.clone().float())
        self.w_im = nn.Parameter(weight.imag.clone().float())
        bias = getattr(conv, "bias", None)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        k = torch.arange(k_modes, dtype=torch.float64)
        t = torch.arange(n, dtype=torch.float64)
        angle = 2 * torch.pi * t[:, None] * k[None, :] / n
        scale = torch.full((k_modes,), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        self.register_buffer("fwd_cos", (torch.cos(angle) / n).float())
        self.register_buffer("fwd_sin", (-torch.sin(angle) / n).float())
        self.register_buffer("inv_cos", (torch.cos(angle) * scale).T.contiguous().float())
        self.register_buffer("inv_sin", (-torch.sin(angle) * scale).T.contiguous().float())

    def transform(self, x: torch.Tensor, output_shape: object = None) -> torch.Tensor:
        return x  # same resolution in and out (what neuralop's skip path asks of a conv)

    def forward(self, x: torch.Tensor, output_shape: object = None) -> torch.Tensor:
        # per mode k, channels mix by a (batch, in) @ (in, out) product: mode-major batched
        # matrix products (ONNX MatMul runs ~25 % faster than the equivalent Einsum)
        xr = (x @ self.fwd_cos).permute(2, 0, 1)  # (k, b, in)
        xi = (x @ self.fwd_sin).permute(2, 0, 1)
        w_re, w_im = self.w_re.permute(2, 0, 1), self.w_im.permute(2, 0, 1)  # (k, in, out)
        yr = (xr @ w_re - xi @ w_im).permute(1, 2, 0)  # (b, out, k)
        yi = (xr @ w_im + xi @ w_re).permute(1, 2, 0)
        y = yr @ self.inv_cos + yi @ self.inv_sin
        return y if self.bias is None else y + self.bias


def _real_spectral_convs(fno: nn.Module) -> None:
    convs = fno.fno_blocks.convs
    for i in range(len(convs)):
        convs[i] = RealSpectralConv1d(convs[i], features.N_FRAMES)


def exportable(model: EnvelopeModel) -> EnvelopeModel:
    """Replace the FNO's complex spectral convolutions by `RealSpectralConv1d` (in place)."""
    if not isinstance(model.net, EncodedFNO):  # the encoded FNO is trained in real form
        _real_spectral_convs(model.net)
    return model
