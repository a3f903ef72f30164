"""The envelope models: a neuraloperator FNO along time (ours) and a GRU (the baseline).

Both map the input channels of `rtverb.synth.features.model_input` (C, N_FRAMES) to 16 fields
along time, which `rtverb.synth.features.correction_db` turns into a correction (8 bands, N_FRAMES)
in dB added to the analytic envelope. The ONNX file holds the network (the fields); the
runtime applies that two-line head in numpy. `exportable` turns a trained FNO into the same
function in real arithmetic (ONNX has no complex tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rtverb.synth import features


@dataclass
class ModelConfig:
    kind: str = "fno"  # "fno" or "gru"
    width: int = 32
    modes: int = 32  # Fourier modes kept along time (FNO); neuralop keeps modes // 2 + 1
    layers: int = 4
    gru_hidden: int = 64


class EnvelopeModel(nn.Module):
    """x (batch, C, N_FRAMES) -> correction (batch, 8, N_FRAMES) dB, as in the runtime."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        n = features.N_BANDS
        analytic_db = features.BASELINE_SCALE_DB * x[:, 2 : 2 + n]
        scale = y[:, n:].mean(dim=-1, keepdim=True)
        return features.OUTPUT_SCALE_DB * y[:, :n] + scale * analytic_db


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
    if cfg.kind != "fno":
        raise ValueError(f"unknown model kind {cfg.kind!r}; use 'fno' or 'gru'")
    from neuralop.models import FNO

    net = FNO(
        n_modes=(cfg.modes,),
        in_channels=features.N_INPUT_CHANNELS,
        out_channels=2 * features.N_BANDS,
        hidden_channels=cfg.width,
        n_layers=cfg.layers,
        positional_embedding=None,  # the inputs carry their own time coordinates
    )
    return EnvelopeModel(net)


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


def exportable(model: EnvelopeModel) -> EnvelopeModel:
    """Replace the FNO's complex spectral convolutions by `RealSpectralConv1d` (in place)."""
    convs = model.net.fno_blocks.convs
    for i in range(len(convs)):
        convs[i] = RealSpectralConv1d(convs[i], features.N_FRAMES)
    return model
