"""Train an envelope model: ``python -m train.fit --data data/train --out runs/fno``.

AdamW, cosine learning-rate schedule with warm-up, gradient clipping, early stopping on the
validation loss, a checkpoint every epoch (``last.pt``) and at the best epoch (``best.pt``),
resume from ``last.pt`` when it exists, loss curves in ``loss.png``. Everything is seeded.
``--init CKPT`` starts a new run as the function of a narrower checkpoint and trains the extra
width from there (`train.model.load_widened_weights`).

The loss works in the log domain, where the late envelope is predictable, and on the whole
IR's energy: the late envelope with the renderer's air absorption plus the exact early part's
energy (`rtverb.synth.features.early_energy`), which is what T30, EDT, C50 and DRR are measured on.
Per band:
- an L1 distance of the late envelopes in dB, both clamped at `DYNAMIC_RANGE_DB` below the
  band's peak (silence before the onset and below the decay's end costs nothing);
- an L1 distance of the energy decay curves (Schroeder, backward) in dB, down to
  `EDC_RANGE_DB`;
- the decay rates of those curves between -5 and -35 dB and between 0 and -10 dB, where T30
  and EDT are read, as |log(rate / target rate)| (least-squares slopes over the target's range);
- an L1 distance of the energy build-up curves (forward cumulative energy) in dB relative to
  the target's total, from `BUILDUP_RANGE_DB`: the level and the early energy that C50 and DRR
  depend on. Frame-wise dB alone let the model sit 4-6 dB low: a few loud early frames carry
  most of the energy but little of a frame average.

The encoded model (``--kind encoded``) adds its heads' terms: a Huber distance (nearly L1) of
log T30 and log EDT to each simulation run's measured value, and of C50 in dB, per band
125-8000 Hz. ``--balance`` weighs every term by the inverse of its size on the training rooms
at the start (so that no term dominates); the weights are kept with the run.
``--init-onnx FILE`` starts an encoded model's FNO as an exported FNO. ``--heads-epochs N``
first trains the heads alone (the FNO is not run: seconds per epoch; weight decay
``--heads-weight-decay``, each member of the ensemble on its own loss), so the joint training
starts from decays that physics features predict well; the heads then stay frozen
(``--no-freeze-heads`` trains them on with the rest: they overfit the single-run labels).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rtverb.synth import features
from train.dataset import EnvelopeSet, load_shards, symmetric_variants
from train.model import (
    HEADS,
    ModelConfig,
    build,
    load_onnx_fno,
    load_weights,
    load_widened_weights,
    weights,
)

DYNAMIC_RANGE_DB = 80.0
EDC_RANGE_DB = 60.0
BUILDUP_RANGE_DB = -30.0
_MAX_DB = 20.0  # predictions are clamped here before exponentiation (energies are << 1)
#: Huber transition of the heads' terms: below it squared, above it linear (L1). Log times
#: (0.02: 2 %) and dB (0.2 dB), well under the labels' own scatter, so nearly L1 throughout.
HUBER_LOG, HUBER_DB = 0.02, 0.2
#: Rooms whose terms set `--balance`'s weights.
BALANCE_ROOMS = 256


@dataclass
class FitConfig:
    data: str = "data/train"
    out: str = "runs/fno"
    val_fraction: float = 0.1
    seed: int = 0
    epochs: int = 140
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 3
    clip_norm: float = 1.0
    patience: int = 25
    edc_weight: float = 2.0
    buildup_weight: float = 2.0
    rate_weight: float = 20.0  # x |log rate ratio|: a 10 % T30 error weighs 2
    threads: int = 1
    balance: bool = False  # weigh each loss term by 1 / its size at the start
    heads_epochs: int = 0  # first train the heads alone (encoded model)
    heads_lr: float = 2e-3
    heads_weight_decay: float = 0.1  # the heads overfit single-run labels without it
    heads_batch_size: int = 128
    encoder_lr_factor: float = 1.0  # the encoded model's encoder, FiLM, heads and trust: lr x this
    freeze_heads: bool = True  # keep the heads as `heads_epochs` left them
    init_onnx: str | None = None  # start an encoded model's FNO as this exported FNO
    augment: bool = True  # each epoch, every room as one of its 16 mirror/swap variants
    limit: int | None = None  # use at most this many rooms (tests, quick runs)
    init: str | None = None  # start a new run from this (narrower) checkpoint's function
    model: ModelConfig = field(default_factory=ModelConfig)


def _energy(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, torch.clamp(db, max=_MAX_DB) / 10)


def edc_db(energy: torch.Tensor) -> torch.Tensor:
    """Backward-integrated energy (Schroeder) in dB, normalized to 0 dB at t = 0."""
    tail = torch.flip(torch.cumsum(torch.flip(energy, [-1]), -1), [-1])
    return 10 * torch.log10(tail / tail[..., :1] + 1e-30)


def buildup_db(energy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Forward cumulative energy in dB relative to the reference's total energy."""
    return 10 * torch.log10(torch.cumsum(energy, -1) / reference.sum(-1, keepdim=True) + 1e-30)


def decay_rate(edc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Least-squares slope of ``edc`` (dB per frame) over ``mask``, per band; negative."""
    t = torch.arange(edc.shape[-1], dtype=edc.dtype)
    n = mask.sum(-1).clamp(min=1)
    t_mean = (mask * t).sum(-1) / n
    y_mean = (mask * edc).sum(-1) / n
    cov = (mask * (t - t_mean[..., None]) * (edc - y_mean[..., None])).sum(-1)
    return cov / (mask * (t - t_mean[..., None]) ** 2).sum(-1).clamp(min=1e-6)


def _rate_error(edc_p: torch.Tensor, edc_t: torch.Tensor, top: float, bottom: float):
    mask = ((edc_t <= top) & (edc_t >= bottom)).float()
    valid = (mask.sum(-1) >= 3).float()
    rate_p = -decay_rate(edc_p, mask)
    rate_t = -decay_rate(edc_t, mask)
    err = (torch.log(rate_p.clamp(min=1e-3)) - torch.log(rate_t.clamp(min=1e-3))).abs()
    return (err * valid).sum() / valid.sum().clamp(min=1)


def envelope_terms(
    pred_db: torch.Tensor, target_db: torch.Tensor, early: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The envelope's loss terms (see the module doc); dB-like units. ``early`` is linear energy."""
    floor = target_db.amax(-1, keepdim=True) - DYNAMIC_RANGE_DB
    env = (torch.maximum(pred_db, floor) - torch.maximum(target_db, floor)).abs().mean()
    air = torch.from_numpy(features.air_db().astype(np.float32))
    whole_p, whole_t = _energy(pred_db + air) + early, _energy(target_db + air) + early
    edc_t, edc_p = edc_db(whole_t), edc_db(whole_p)
    mask = (edc_t > -EDC_RANGE_DB).float()
    edc = ((edc_p - edc_t).abs() * mask).sum() / mask.sum().clamp(min=1)
    rates = _rate_error(edc_p, edc_t, -5.0, -35.0) + _rate_error(edc_p, edc_t, 0.0, -10.0)
    up_t, up_p = buildup_db(whole_t, whole_t), buildup_db(whole_p, whole_t)
    up_mask = (up_t > BUILDUP_RANGE_DB).float()
    buildup = ((up_p - up_t).abs() * up_mask).sum() / up_mask.sum().clamp(min=1)
    return {"envelope": env, "edc": edc, "rates": rates, "buildup": buildup}


def head_terms(heads: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The heads' loss terms: ``heads`` (b, 3, 8) against per-run ``labels`` (b, runs, 3, 7).

    Huber in log time (T30, EDT) and in dB (C50); labels that could not be measured (NaN)
    are left out.
    """
    n = labels.shape[-1]
    pred = heads[:, None, :, :n].expand_as(labels)
    out = {}
    for k, name in enumerate(HEADS):
        p, t = pred[:, :, k], labels[:, :, k]
        valid = torch.isfinite(t)
        if name.endswith("_s"):
            valid &= t > 0
            p, t = torch.log(p[valid]), torch.log(t[valid])
            delta = HUBER_LOG
        else:
            p, t, delta = p[valid], t[valid], HUBER_DB
        loss = torch.nn.functional.huber_loss(p, t, delta=delta) / delta  # L1-like scale
        out[name.split("_")[0]] = loss if len(t) else heads.sum() * 0
    return out


def fixed_weights(cfg: FitConfig) -> dict[str, float]:
    """The terms' weights without ``--balance``."""
    return {
        "envelope": 1.0,
        "edc": cfg.edc_weight,
        "rates": cfg.rate_weight,
        "buildup": cfg.buildup_weight,
        **dict.fromkeys(("T30", "EDT", "C50"), 1.0),
    }


def envelope_loss(
    pred_db: torch.Tensor,
    target_db: torch.Tensor,
    early: torch.Tensor,
    weights: dict[str, float],
    heads: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss: the weighted sum of `envelope_terms` (and `head_terms`)."""
    terms = envelope_terms(pred_db, target_db, early)
    if heads is not None and labels is not None:
        terms.update(head_terms(heads, labels))
    return sum((weights[k] * v for k, v in terms.items()), torch.zeros(()))


def head_labels(data: EnvelopeSet) -> np.ndarray:
    """Per-run T30, EDT and C50 of each room, (n, runs, 3, 7) float32."""
    return np.stack([data.metrics[k] for k in HEADS], axis=2).astype(np.float32)


def _tensors(data: EnvelopeSet) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(data.x),
        torch.from_numpy(data.baseline_db),
        torch.from_numpy(data.target_db),
        torch.from_numpy(data.early),
        torch.from_numpy(data.physics),
        torch.from_numpy(head_labels(data)),
    )


@torch.no_grad()
def term_means(model, data: EnvelopeSet) -> dict[str, float]:
    """Each loss term's mean over ``data`` (batches of 64 rooms)."""
    model.eval()
    x, base, target, early, physics, labels = _tensors(data)
    sums: dict[str, float] = {}
    for start in range(0, len(data), 64):
        sl = slice(start, start + 64)
        correction, heads = model(x[sl], physics[sl])
        terms = envelope_terms(base[sl] + correction, target[sl], early[sl])
        if heads is not None:
            terms.update(head_terms(heads, labels[sl]))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.item() * len(x[sl])
    return {k: v / len(data) for k, v in sums.items()}


def pretrain_heads(
    model, train_set: EnvelopeSet, val_set: EnvelopeSet, cfg: FitConfig, log
) -> None:
    """Train the heads alone on their terms (each weighed by 1 / its size at the start), each
    member of the ensemble on its own loss, keeping the epoch with the best validation loss
    (of the ensemble's mean)."""
    net = model.net

    def terms(data: EnvelopeSet) -> dict[str, torch.Tensor]:
        physics = torch.from_numpy(data.physics)
        heads = net.head_values(net.heads(net.standardized(physics)), physics)
        return head_terms(heads, torch.from_numpy(head_labels(data)))

    with torch.no_grad():
        scale = {k: 1.0 / max(v.item(), 1e-6) for k, v in terms(train_set).items()}
    params = list(net.heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.heads_lr, weight_decay=cfg.heads_weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.heads_epochs)
    physics, labels = torch.from_numpy(train_set.physics), torch.from_numpy(head_labels(train_set))
    rng = np.random.default_rng(cfg.seed)
    best, best_state = float("inf"), None
    for epoch in range(cfg.heads_epochs):
        order = torch.from_numpy(rng.permutation(len(train_set)))
        for start in range(0, len(order), cfg.heads_batch_size):
            idx = order[start : start + cfg.heads_batch_size]
            loss = torch.zeros(())
            for raw in net.heads.members(net.standardized(physics[idx])):
                found = head_terms(net.head_values(raw, physics[idx]), labels[idx])
                loss = loss + sum((scale[k] * v for k, v in found.items()), torch.zeros(()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        with torch.no_grad():
            val = {k: v.item() for k, v in terms(val_set).items()}
        total = sum(scale[k] * v for k, v in val.items())
        if total < best:
            best = total
            best_state = [p.detach().clone() for p in params]
        if (epoch + 1) % max(1, cfg.heads_epochs // 10) == 0:
            log(f"heads epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in val.items()))
    if best_state is not None:
        with torch.no_grad():
            for p, v in zip(params, best_state, strict=True):
                p.copy_(v)


def train_one_epoch(model, optimizer, scheduler, data, cfg: FitConfig, rng, term_weights) -> float:
    model.train()
    x, base, target, early, physics, labels = _tensors(data)
    first = 2 + features.N_BANDS  # the room vector's channels
    variants = symmetric_variants(data.x[:, first:, 0]) if cfg.augment else None
    order = torch.from_numpy(rng.permutation(len(data)))
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        xb = x[idx]
        if variants is not None:
            pick = rng.integers(len(variants), size=len(idx))
            xb = xb.clone()
            xb[:, first:, :] = torch.from_numpy(variants[pick, idx.numpy()])[:, :, None]
        correction, heads = model(xb, physics[idx])
        loss = envelope_loss(
            base[idx] + correction, target[idx], early[idx], term_weights, heads, labels[idx]
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def evaluate(model, data: EnvelopeSet, term_weights: dict[str, float]) -> float:
    """The weighted loss over ``data``."""
    return sum(term_weights[k] * v for k, v in term_means(model, data).items())


def checkpoint(path: Path, model, optimizer, scheduler, state: dict, cfg: FitConfig) -> None:
    tmp = path.with_suffix(".partial")
    torch.save(
        {
            "model": weights(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": state,
            "config": dataclasses.asdict(cfg),
        },
        tmp,
    )
    tmp.replace(path)


def resume_state_from_dir(out: Path, model, optimizer, scheduler, cfg: FitConfig) -> dict | None:
    path = out / "last.pt"
    if not path.exists():
        return None
    ckpt = torch.load(path, weights_only=False)
    if ckpt["config"]["model"] != dataclasses.asdict(cfg.model):
        raise SystemExit(
            f"{path}: was trained with model {ckpt['config']['model']}, not "
            f"{dataclasses.asdict(cfg.model)}; resume with the same options or use another --out"
        )
    load_weights(model, ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return dict(ckpt["state"])


def plot_losses(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history["train"], label="train")
    ax.plot(history["val"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (dB)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _param_groups(model, cfg: FitConfig) -> list[dict]:
    """One group at ``lr``; an encoded model's parts other than its FNO at ``lr`` x factor."""
    if not model.encoded:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    fno = {id(p) for p in model.net.fno.parameters()}
    frozen = {id(p) for p in _frozen(model, cfg)}
    rest = [p for p in model.parameters() if id(p) not in fno | frozen]
    return [
        {"params": list(model.net.fno.parameters()), "lr": cfg.lr},
        {"params": rest, "lr": cfg.lr * cfg.encoder_lr_factor},
    ]


def _frozen(model, cfg: FitConfig) -> list:
    """With ``--freeze-heads`` (the default), the heads' parameters: trained alone
    (`pretrain_heads`), then kept, as trained jointly they overfit the single-run labels."""
    if not (model.encoded and cfg.freeze_heads):
        return []
    return list(model.net.heads.parameters())


def fit(cfg: FitConfig, data: EnvelopeSet | None = None, log=print) -> dict:
    """Train (or resume) and return the final state: best validation loss and epoch, history."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_shards(cfg.data, limit=cfg.limit)
    train_set, val_set = data.split(cfg.val_fraction, cfg.seed)
    model = build(cfg.model)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg), weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    state = resume_state_from_dir(out, model, optimizer, scheduler, cfg) or {
        "epoch": 0,
        "best_val": float("inf"),
        "best_epoch": -1,
        "history": {"train": [], "val": []},
        "n_train": len(train_set),
        "n_val": len(val_set),
    }
    if not state["epoch"]:
        if cfg.init:
            ckpt = torch.load(cfg.init, weights_only=False)
            load_widened_weights(model, ckpt["model"], cfg.init)
            log(f"started from the function of {cfg.init}")
        if cfg.init_onnx:
            load_onnx_fno(model, cfg.init_onnx)
            log(f"started the FNO as {cfg.init_onnx}")
        if model.encoded:
            model.net.set_feature_statistics(torch.from_numpy(train_set.physics))
        state["term_weights"] = fixed_weights(cfg)
        if cfg.balance:  # the sizes of the model as started, before `pretrain_heads`
            start = term_means(
                model, train_set.subset(np.arange(min(len(train_set), BALANCE_ROOMS)))
            )
            state["term_weights"] = {k: 1.0 / max(v, 1e-6) for k, v in start.items()}
            log("terms at the start: " + ", ".join(f"{k} {v:.3g}" for k, v in start.items()))
        if model.encoded and cfg.heads_epochs:
            pretrain_heads(model, train_set, val_set, cfg, log)
    for p in _frozen(model, cfg):
        p.requires_grad_(False)
    if state["epoch"]:
        log(f"resumed from {out / 'last.pt'} at epoch {state['epoch']}")
        if (state["n_train"], state["n_val"]) != (len(train_set), len(val_set)):
            # more data since the checkpoint (fine-tuning): another validation set, whose losses
            # do not compare with the old best, so the best and the patience start over
            log(f"data changed: {len(train_set)} training / {len(val_set)} validation rooms")
            state.update(best_val=float("inf"), best_epoch=state["epoch"])
            state.update(n_train=len(train_set), n_val=len(val_set))
    rng = np.random.default_rng([cfg.seed, state["epoch"]])
    while state["epoch"] < cfg.epochs and state["epoch"] - state["best_epoch"] <= cfg.patience:
        t0 = time.perf_counter()
        weights_now = state["term_weights"]
        train_loss = train_one_epoch(model, optimizer, scheduler, train_set, cfg, rng, weights_now)
        val_loss = evaluate(model, val_set, weights_now)
        state["history"]["train"].append(train_loss)
        state["history"]["val"].append(val_loss)
        state["epoch"] += 1
        if val_loss < state["best_val"]:
            state["best_val"], state["best_epoch"] = val_loss, state["epoch"]
            checkpoint(out / "best.pt", model, optimizer, scheduler, state, cfg)
        checkpoint(out / "last.pt", model, optimizer, scheduler, state, cfg)
        log(
            f"epoch {state['epoch']:4d}  train {train_loss:7.3f}  val {val_loss:7.3f}  "
            f"best {state['best_val']:7.3f}@{state['best_epoch']}  "
            f"{time.perf_counter() - t0:5.1f} s"
        )
    state["val_terms"] = term_means(model, val_set)
    log("validation terms: " + ", ".join(f"{k} {v:.3g}" for k, v in state["val_terms"].items()))
    plot_losses(state["history"], out / "loss.png")
    (out / "state.json").write_text(json.dumps({k: v for k, v in state.items()}, indent=1))
    return state


def config_from_args(argv: list[str] | None, description: str = __doc__) -> FitConfig:
    """Every FitConfig and ModelConfig field is a flag (``--lr``, ``--width``, ...)."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    for f in dataclasses.fields(FitConfig) + dataclasses.fields(ModelConfig):
        if f.name == "model":
            continue
        default = f.default
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            continue
        kind = type(default) if default is not None else (str if "str" in str(f.type) else int)
        parser.add_argument(flag, type=kind, default=default)
    args = vars(parser.parse_args(argv))
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in args.items() if k in model_fields})
    return FitConfig(**{k: v for k, v in args.items() if k not in model_fields}, model=model)


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    state = fit(cfg)
    print(f"best validation loss {state['best_val']:.3f} dB at epoch {state['best_epoch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
