"""Find an editable room whose synthesized IR matches a target (`match`).

The room is a small parametrization, every value scaled to [0, 1] between model-domain bounds:

- size: each axis on a log scale over the domain (x and y 2-20 m, z 2.2-8 m; or the user's
  ``size_m``);
- source-listener distance, the two placed symmetrically about the centre along the floor's
  diagonal at 1.5 m and 1.2 m height (or the user's positions);
- one Sabine reverberation time per matched band (250-4000 Hz), inside the domain's
  0.1-3.0 s, which sets the absorption (125 Hz and 8 kHz repeat their neighbours);
- per band, how that absorption splits between floor/ceiling and the walls (1/4 to 4 times,
  Sabine's total unchanged), and one split between the two pairs of walls (1/4 to 4 times):
  what shapes the early decay apart from the late one, with the proportions;
- scattering, 0-0.5;
- with ``fit_mix``, the dry level (a plugin's IR holds its dry signal).

Plausibility: among the rooms that fit, opposite walls share one material and floor and
ceiling another, the spectra of reverberation time and of the split are kept smooth (a penalty
on their second differences), so a band the target does not give follows its neighbours, and
a weak prior prefers common proportions (1.6 : 1.25 : 1) where they fit as well.

The fit: from four starting sizes of those proportions, a few multiplicative corrections of
each band's reverberation time towards the target T30 (the model's T30 grows with it
monotonically); from the best start, CMA-ES (`cma`, derivative-free, with the domain as its
bounds), then the same T30 corrections as long as they lower the cost. Each evaluation is one
`rtverb.synthesize` and one `measure`; a generation's rooms are evaluated in parallel
(``workers`` processes). Errors count in units of what a listener notices: 5 % of T30, 10 % of
EDT, 1 dB of C50, 3 dB of DRR.

Tried on the 20 rooms of ``python -m train.evaluate_match`` and left: fixed proportions with
one split (walls against floor and ceiling): whatever the search, EDT missed by 8-15 % median
per band, since a decay whose EDT is far shorter than its T30 needs a long or low room; one
material on every surface; Nelder-Mead (`scipy.optimize.minimize`, two searches) in place of
CMA-ES: it stalls on the rough cost (on the fixed proportions, at 600 rooms each, CMA-ES took
the worst band's T30 from 7.1 to 4.7 % and C50 from 1.28 to 1.01 dB).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing import get_context

import cma
import numpy as np

from rtverb.analysis.acoustics import Metrics, measure
from rtverb.matching.target import MATCH_BANDS_HZ, MatchError, Target
from rtverb.room.params import AXES, DOMAIN_CLEARANCE_M, DOMAIN_RT60_S, PARAMS_BY_NAME
from rtverb.room.room import Room, RoomError, Surfaces

#: Proportions of the starting rooms (x : y : z), a common "good" rectangular-room ratio.
PROPORTIONS = (1.6, 1.25, 1.0)
#: Source and listener heights, m.
SOURCE_HEIGHT_M, LISTENER_HEIGHT_M = 1.5, 1.2
#: Error scales (one "unit" of mismatch): relative T30 and EDT, C50 and DRR in dB.
T30_SCALE, EDT_SCALE, C50_SCALE_DB, DRR_SCALE_DB = 0.05, 0.10, 1.0, 3.0
#: Weight of the smoothness penalty on log reverberation time across bands.
SMOOTHNESS_WEIGHT = 4.0
#: Weight of the prior on proportions (squared log ratios away from `PROPORTIONS`): small, so
#: that it only chooses among rooms that fit alike (a 3 : 1 floor costs 0.07 units).
PROPORTION_WEIGHT = 0.1
#: T30 corrections of each starting room before the search.
T30_CORRECTIONS = 3
#: Starting room sizes tried (fractions of the size range), the best one is searched from.
SIZE_GRID = (0.15, 0.4, 0.65, 0.9)
#: Evaluations of the search, at most: on the 20 rooms of ``train.evaluate_match`` 1,000
#: left EDT at 10-11 % median in two bands, 2,000 met every target (README).
MAX_EVALUATIONS = 2000
#: CMA-ES's initial step, in [0, 1] units of each parameter.
CMA_SIGMA = 0.15
#: CMA-ES's random seed: a match is reproducible.
CMA_SEED = 1
#: Range of the split of absorption between the east/west and the north/south walls, and
#: between floor/ceiling and the walls (ratios of absorption coefficients).
SPLIT_RANGE = 4.0
#: Sabine reverberation times searched: the domain's, 1 % inside so that rounding the
#: absorption coefficients never steps out of it.
RT60_RANGE_S = (DOMAIN_RT60_S[0] * 1.01, DOMAIN_RT60_S[1] * 0.99)
#: Range of the dry level fitted with ``fit_mix``, dB (the wet level stays the room's).
DRY_DB = (-40.0, 12.0)
#: Where the search starts on the parameters other than reverberation times, in [0, 1].
START_FRACTION = 0.35
#: A parameter this close to its [0, 1] bound is "at the bound".
AT_BOUND = 0.01
#: Rate the candidate IRs are synthesized and measured at, at most, Hz.
MAX_MATCH_RATE_HZ = 48000


@dataclass(frozen=True)
class Match:
    """A matched room, what it measures, and the domain bounds that stopped the fit."""

    room: Room
    target: Target
    metrics: Metrics
    bounds_hit: list[str] = field(default_factory=list)
    evaluations: int = 0
    elapsed_s: float = 0.0


@dataclass
class _Space:
    """Maps a vector in [0, 1]^n to a room; some parts may be held (``fixed``)."""

    start: Room
    fixed: frozenset[str]
    fit_mix: bool = False
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = (
            ([] if "size" in self.fixed else [f"size_{axis}" for axis in AXES])
            + ([] if "positions" in self.fixed else ["distance"])
            + [f"rt60_{int(b)}" for b in MATCH_BANDS_HZ]
            + ["scattering"]
            + [f"balance_{int(b)}" for b in MATCH_BANDS_HZ]
            + ["walls"]
            + (["dry"] if self.fit_mix else [])
        )

    def size(self, u: dict[str, float]) -> tuple[float, float, float]:
        if "size" in self.fixed:
            return self.start.size_m
        domains = zip(AXES, _size_domains(), strict=True)
        return tuple(lo * (hi / lo) ** u[f"size_{a}"] for a, (lo, hi) in domains)

    def size_fractions(self, k: float) -> dict[str, float]:
        """The size parameters of a room of `PROPORTIONS` whose height is ``k`` of its range."""
        height = _size_domains()[2]
        z = height[0] * (height[1] / height[0]) ** k
        return {
            f"size_{axis}": float(np.clip(math.log(p * z / lo) / math.log(hi / lo), 0, 1))
            for axis, p, (lo, hi) in zip(AXES, PROPORTIONS, _size_domains(), strict=True)
        }

    def positions(self, size: tuple[float, float, float], u: dict[str, float]) -> tuple:
        if "positions" in self.fixed:
            return self.start.source_position_m, self.start.listener_position_m
        margin = DOMAIN_CLEARANCE_M + 0.05
        x, y, z = size
        half = np.array([x / 2 - margin, y / 2 - margin])
        longest = 2 * float(np.linalg.norm(half))
        distance = DOMAIN_CLEARANCE_M + 0.05 + u["distance"] * (longest - 0.6)
        direction = half / np.linalg.norm(half)
        centre = np.array([x / 2, y / 2])
        a, b = centre - direction * distance / 2, centre + direction * distance / 2
        heights = (min(SOURCE_HEIGHT_M, z - margin), min(LISTENER_HEIGHT_M, z - margin))
        return (float(a[0]), float(a[1]), heights[0]), (float(b[0]), float(b[1]), heights[1])

    def rt60_s(self, u: dict[str, float]) -> np.ndarray:
        lo, hi = RT60_RANGE_S
        return np.array([lo * (hi / lo) ** u[f"rt60_{int(b)}"] for b in MATCH_BANDS_HZ])

    def room(self, vector: np.ndarray) -> Room:
        u = dict(zip(self.names, np.clip(vector, 0.0, 1.0), strict=True))
        size = self.size(u)
        source, listener = self.positions(size, u)
        x, y, z = size
        area = 2 * (x * y + x * z + y * z)
        alpha = 0.161 * x * y * z / (area * self.rt60_s(u))
        # floor and ceiling take 1/4 to 4 times the absorption of the north and south walls
        # per band, the east and west walls 1/4 to 4 times, Sabine's total unchanged
        floor = _ratio([u[f"balance_{int(b)}"] for b in MATCH_BANDS_HZ])
        east = _ratio(u["walls"])
        north = alpha * area / (2 * x * y * floor + 2 * y * z * east + 2 * x * z)

        def coeffs(a: np.ndarray) -> tuple[float, ...]:
            a = np.clip(a, 0.01, 1.0)
            return tuple(round(float(v), 4) for v in (a[0], *a, a[-1]))

        horizontal, east_west = coeffs(north * floor), coeffs(north * east)
        north_south = coeffs(north)
        return replace(
            self.start,
            size_m=tuple(round(s, 3) for s in size),  # type: ignore[arg-type]
            source_position_m=tuple(round(v, 3) for v in source),
            listener_position_m=tuple(round(v, 3) for v in listener),
            surfaces=Surfaces(
                horizontal, horizontal, east_west, east_west, north_south, north_south
            ),
            scattering=round(float(0.5 * u["scattering"]), 4),
            dry_db=round(DRY_DB[0] + u["dry"] * (DRY_DB[1] - DRY_DB[0]), 2)
            if self.fit_mix
            else self.start.dry_db,
        )

    def with_rt60(self, vector: np.ndarray, rt60_s: np.ndarray) -> np.ndarray:
        """``vector`` with the reverberation times set to ``rt60_s`` (clamped to the domain)."""
        lo, hi = RT60_RANGE_S
        out = vector.copy()
        for band, rt in zip(MATCH_BANDS_HZ, np.clip(rt60_s, lo, hi), strict=True):
            out[self.names.index(f"rt60_{int(band)}")] = math.log(rt / lo) / math.log(hi / lo)
        return out

    def penalty(self, vector: np.ndarray) -> float:
        """What makes a room less plausible: rough spectra, uncommon proportions."""
        u = dict(zip(self.names, np.clip(vector, 0, 1), strict=True))
        balance = np.log(_ratio([u[f"balance_{int(b)}"] for b in MATCH_BANDS_HZ]))
        smooth = SMOOTHNESS_WEIGHT * sum(
            float(np.sum(np.diff(curve, 2) ** 2)) for curve in (np.log(self.rt60_s(u)), balance)
        )
        x, y, z = self.size(u)
        px, py, pz = PROPORTIONS
        odd = math.log(x / y / (px / py)) ** 2 + math.log(y / z / (py / pz)) ** 2
        return smooth + (0.0 if "size" in self.fixed else PROPORTION_WEIGHT * odd)


def _size_domains() -> list[tuple[float, float]]:
    specs = (PARAMS_BY_NAME[f"room/size/{axis}"] for axis in AXES)
    return [(spec.domain_min, spec.domain_max) for spec in specs]


def _ratio(fraction: float | list[float]) -> np.ndarray:
    """A [0, 1] fraction as a ratio from 1 / `SPLIT_RANGE` to `SPLIT_RANGE` (0.5: even)."""
    return np.asarray(SPLIT_RANGE ** (2 * np.asarray(fraction) - 1))


def matched_ir(room: Room, sample_rate_hz: int, with_mix: bool = False) -> np.ndarray:
    """The (taps,) IR a match compares: the room's (its first path for a pair, for now), or
    with ``with_mix`` the one rtverb plays, dry plus wet."""
    from rtverb.synth import synthesize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit stays inside the domain; bounds are reported
        ir = synthesize(room, sample_rate_hz)
    first = ir.reshape(-1, ir.shape[-1])[0]
    if with_mix:
        first = first * 10 ** (room.wet_db / 20)
        first[0] += 10 ** (room.dry_db / 20)  # the dry path is not delayed
    return first


def _synth_metrics(room: Room, sample_rate_hz: int, with_mix: bool = False) -> Metrics:
    return measure(
        matched_ir(room, sample_rate_hz, with_mix), sample_rate_hz, bands_hz=MATCH_BANDS_HZ
    )


def _cost_terms(m: Metrics, target: Target) -> np.ndarray:
    def rel(a: list[float], b: tuple[float, ...], scale: float) -> list[float]:
        return [
            (x / y - 1) / scale if not math.isnan(x) else 3.0
            for x, y in zip(a, b, strict=True)
            if not math.isnan(y)
        ]

    terms = rel(m.T30_s, target.T30_s, T30_SCALE) + rel(m.EDT_s, target.EDT_s, EDT_SCALE)
    terms += [
        (x - y) / C50_SCALE_DB if not math.isnan(x) else 3.0
        for x, y in zip(m.C50_db, target.C50_db, strict=True)
        if not math.isnan(y)
    ]
    if not math.isnan(target.DRR_db):
        terms.append((m.DRR_db - target.DRR_db) / DRR_SCALE_DB if not math.isnan(m.DRR_db) else 3)
    return np.array(terms)


def _initial_rt60(target: Target) -> np.ndarray:
    t30 = np.array(target.T30_s)
    known = ~np.isnan(t30)
    x = np.log(np.array(MATCH_BANDS_HZ))
    return np.exp(np.interp(x, x[known], np.log(t30[known])))


def bounds_hit(space: _Space, vector: np.ndarray, room: Room) -> list[str]:
    """Which domain bounds the matched room sits on, in words."""
    out = []
    u = dict(zip(space.names, vector, strict=True))
    words = {
        **{
            f"size_{axis}": (f"the domain's smallest {axis} ({lo:g} m)", f"its largest ({hi:g} m)")
            for axis, (lo, hi) in zip(AXES, _size_domains(), strict=True)
        },
        "distance": ("the shortest source-listener distance", "the longest distance in the room"),
        "scattering": ("no scattering", "the domain's largest scattering (0.5)"),
    }
    for name, value in u.items():
        low, high = value <= AT_BOUND, value >= 1 - AT_BOUND
        if name.startswith("rt60_") and (low or high):
            limit = DOMAIN_RT60_S[1 if high else 0]
            out.append(f"Sabine RT60 at {name[5:]} Hz = the domain's {limit:g} s")
        elif name in words and (low or high):
            out.append(words[name][1 if high else 0])
    absorption = room.absorption()[:, 1:-1]
    for band, a in zip(MATCH_BANDS_HZ, absorption.T, strict=True):
        if a.min() <= 0.01 or a.max() >= 1.0:
            out.append(f"absorption at {band:g} Hz reaches the limit of a material (0.01-1)")
    return out


def match(
    target: Target,
    sample_rate_hz: int = 48000,
    size_m: tuple[float, float, float] | None = None,
    start: Room | None = None,
    fix: frozenset[str] = frozenset(),
    fit_mix: bool = False,
    max_evaluations: int = MAX_EVALUATIONS,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> Match:
    """The room inside the model domain whose synthesized IR best matches ``target``.

    Args:
        target: what to match (`target_from_ir`, `target_from_text`).
        sample_rate_hz: rate candidates are synthesized and measured at (the target's).
        size_m: hold the room's size at this.
        start: a room whose size and/or positions ``fix`` holds ("size", "positions"), and
            whose mix settings the match keeps.
        fix: parts of ``start`` held: "size", "positions".
        fit_mix: the target holds a dry path (a plugin's IR usually does): fit the room's
            ``dry_db`` too (its ``wet_db`` stays) and match the IR rtverb plays, dry plus wet.
        max_evaluations: budget of the search.
        progress: called with the number of synthesized rooms so far.
        workers: processes synthesizing candidates (default: one per CPU core; 1 synthesizes
            in this process). The result does not depend on it.

    Raises:
        MatchError: unknown ``fix`` names, ``fix`` without ``start``, a size outside the domain,
            a budget below 1, fewer than 1 worker.
    """
    if not 1 <= max_evaluations <= 100000:
        raise MatchError(f"--max-evaluations must be 1-100000, got {max_evaluations}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise MatchError(f"workers must be 1 or more, got {workers}")
    unknown = set(fix) - {"size", "positions"}
    if unknown:
        raise MatchError(f"--fix: unknown {', '.join(sorted(unknown))}; use size, positions")
    if fix and start is None:
        raise MatchError("--fix holds parts of a starting room: give one with --start")
    base = start or Room(name="Matched room")
    if size_m is not None:
        fix = fix | {"size"}
        try:
            base = replace(
                base,
                size_m=size_m,
                source_position_m=(0.6, 0.6, 1.2),
                listener_position_m=(1.2, 1.2, 1.2),
            )
        except RoomError as e:
            raise MatchError(f"--size: {e}") from None
    space = _Space(base, frozenset(fix), fit_mix)
    rate = int(min(sample_rate_hz, MAX_MATCH_RATE_HZ))
    t0 = time.perf_counter()
    with _Evaluator(space, target, rate, workers, progress) as evaluate:
        wanted = _initial_rt60(target)
        vector = _best_start(space, target, evaluate, wanted)
        vector = _search(space, evaluate, vector, max_evaluations)
        # polish: the search trades T30 against the rest; pull T30 back while the cost improves
        ((cost, metrics),) = evaluate([vector])
        rt60 = space.rt60_s(dict(zip(space.names, vector, strict=True)))
        for _ in range(T30_CORRECTIONS):
            measured = np.array(metrics.T30_s)
            rt60 = rt60 * np.clip(np.where(np.isnan(measured), 1.0, wanted / measured), 0.8, 1.25)
            candidate = space.with_rt60(vector, rt60)
            ((candidate_cost, candidate_metrics),) = evaluate([candidate])
            if candidate_cost >= cost:
                break
            vector, cost, metrics = candidate, candidate_cost, candidate_metrics
        count = evaluate.count
    room = space.room(vector)
    return Match(
        room=room,
        target=target,
        metrics=metrics,
        bounds_hit=bounds_hit(space, vector, room),
        evaluations=count,
        elapsed_s=time.perf_counter() - t0,
    )


class _Evaluator:
    """Costs and metrics of candidate vectors, synthesized in ``workers`` processes."""

    def __init__(
        self,
        space: _Space,
        target: Target,
        rate: int,
        workers: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.space, self.target, self.rate, self.progress = space, target, rate, progress
        self.count = 0
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            # spawn: the parent may hold ONNX Runtime's threads, which a fork would copy
            self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def __enter__(self) -> _Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def __call__(self, vectors: list[np.ndarray]) -> list[tuple[float, Metrics]]:
        rooms = [self.space.room(v) for v in vectors]
        synth = partial(_synth_metrics, sample_rate_hz=self.rate, with_mix=self.space.fit_mix)
        metrics = list(self.pool.map(synth, rooms) if self.pool else map(synth, rooms))
        self.count += len(rooms)
        if self.progress:
            self.progress(self.count)
        return [
            (float(np.sum(_cost_terms(m, self.target) ** 2)) + self.space.penalty(v), m)
            for v, m in zip(vectors, metrics, strict=True)
        ]


Evaluate = Callable[[list[np.ndarray]], list[tuple[float, Metrics]]]


def _best_start(
    space: _Space, target: Target, evaluate: Evaluate, wanted: np.ndarray
) -> np.ndarray:
    """The best of the starting rooms (`SIZE_GRID`), each with its T30 corrections."""
    sizes = SIZE_GRID if "size_x" in space.names else (START_FRACTION,)
    vectors, rt60s = [], []
    for k in sizes:
        u = dict.fromkeys(space.names, START_FRACTION)
        if "size_x" in space.names:
            u |= space.size_fractions(k)
        if "distance" in space.names:
            u["distance"] = _distance_for_drr(space, u, target, wanted)
        vectors.append(space.with_rt60(np.array(list(u.values())), wanted))
        rt60s.append(wanted.copy())
    best: tuple[float, np.ndarray] | None = None
    for _ in range(T30_CORRECTIONS):
        for i, (cost, m) in enumerate(evaluate(vectors)):
            if best is None or cost < best[0]:
                best = (cost, vectors[i])
            measured = np.array(m.T30_s)
            rt60s[i] = rt60s[i] * np.clip(
                np.where(np.isnan(measured), 1.0, wanted / measured), 0.5, 2.0
            )
            vectors[i] = space.with_rt60(vectors[i], rt60s[i])
    assert best is not None
    return best[1]


def _search(space: _Space, evaluate: Evaluate, vector: np.ndarray, budget: int) -> np.ndarray:
    """CMA-ES from ``vector`` inside [0, 1]^n, at most ``budget`` evaluations; the best found."""
    options = {"bounds": [0, 1], "seed": CMA_SEED, "verbose": -9, "verb_log": 0}
    es = cma.CMAEvolutionStrategy(vector, CMA_SIGMA, options)
    best = (math.inf, vector)
    used = 0
    while not es.stop() and used + es.popsize <= budget:
        asked = es.ask()
        candidates = [np.clip(np.asarray(x), 0.0, 1.0) for x in asked]
        costs = [cost for cost, _ in evaluate(candidates)]
        used += len(candidates)
        es.tell(asked, costs)
        i = int(np.argmin(costs))
        if costs[i] < best[0]:
            best = (costs[i], candidates[i])
    return best[1]


def _distance_for_drr(
    space: _Space, u: dict[str, float], target: Target, rt60: np.ndarray
) -> float:
    """The distance fraction whose diffuse-field DRR is the target's (Barron: critical distance
    0.057 sqrt(V / T)); `START_FRACTION` without a target DRR."""
    if math.isnan(target.DRR_db):
        return START_FRACTION
    size = space.size(u)
    critical_m = 0.057 * math.sqrt(size[0] * size[1] * size[2] / float(np.mean(rt60)))
    wanted_m = critical_m * 10 ** (-target.DRR_db / 20)
    lo, hi = (
        np.linalg.norm(np.subtract(*space.positions(size, {**u, "distance": f})))
        for f in (0.0, 1.0)
    )
    return float(np.clip((wanted_m - lo) / (hi - lo), 0.0, 1.0))
