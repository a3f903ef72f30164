"""Draw-free low bands: the late part's energy in each window is what its envelope says.

The late part is one fixed noise draw shaped by the envelope (`rtverb.synth.late`). An octave
below ~1 kHz holds few independent samples in 50 ms (about 9 at 250 Hz), so the energy an
octave filter reads from that noise in a window differs from the envelope's by about
1 / sqrt(9), a dB or more, and the early part's correlation with it (the cross term, zero on
average) adds as much: C50 and EDT would carry one random draw.

After rendering, the bands from `MIN_BAND_HZ` to `MAX_BAND_HZ` are measured through the
analysis octave filters (`rtverb.synth.early.octave_band_sos`, forward and backward) in
windows from the direct sound: the first ends where C50 splits, 50 ms on; then `WINDOW_S`
windows through `SPAN_S`. In each, the band's late part is scaled so that the window's energy
(early, late and their cross term) is the early part's own plus the late energy the envelope
predicts (its mean over noise draws, `noise_energy`). With the room encoder's C50
(``c50_db``), the first window's target is also moved `C50_BLEND` of the way to it: the FNO's
envelope and the encoder's head err independently enough that their blend errs less than
either (`train.evaluate`'s rows ``model_no_c50_blend`` and ``heads``; the share was chosen on
validation rooms of the training data, `python -m train.blend`, not on the held-out truth).

The filters run in the frequency domain on a segment around the windows, the bands' outputs
at the lowest rate that keeps their energy (`_Plan`), all paths of a stereo room in one go.
125 Hz is left as drawn: its filter's reach would double the segment.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from scipy import fft, signal

from rtverb.synth.early import octave_band_sos
from rtverb.synth.physics import MODEL_BANDS_HZ

#: Bands equalized: those whose octave holds fewer than ~40 independent samples in 50 ms.
MIN_BAND_HZ, MAX_BAND_HZ = 250.0, 1000.0
#: The first window ends this long after the direct sound (C50's split).
FIRST_S = 0.05
#: Later windows: this long each, through this long after the direct sound.
WINDOW_S = 0.05
SPAN_S = 0.15
#: Share of the way the first window's C50 moves from the envelope's to the encoder's head.
C50_BLEND = 0.5
#: A window's late part is scaled by at most this much either way (dB).
MAX_GAIN_DB = 6.0
#: The blend leaves the first window's late part at least this share of its early energy.
MIN_LATE_SHARE = 0.01
#: The segment reaches this many periods of the lowest band past the windows: the octave
#: filter's energy response (forward and backward) has fallen ~50 dB by then.
RING_PERIODS = 7
#: The segment starts this long before the direct sound: the late part starts no earlier
#: than the envelope frame (8 ms) that holds it, interpolated from half a 4 ms bin before.
LEAD_S = 0.012
#: Each band's output is kept up to where its filter's energy response (forward and backward:
#: the fourth power of one pass) has fallen this far, and sampled at 4x that frequency (its
#: square, the energy, is band-limited to twice it).
KEPT_DB = -40.0


class _Plan(NamedTuple):
    model_bands: list[int]  # the bands equalized
    sos: list[np.ndarray]  # their analysis octave filters
    ring: int  # samples before the first window (the direct sound)
    length: int  # segment samples
    n_fft: int
    response: np.ndarray  # (bands, kept bins): |H|^2 on the segment's rfft grid
    rate: int  # samples of the decimated outputs per segment FFT length
    edges: np.ndarray  # the windows' edges from the direct sound, samples
    kept: slice  # the decimated samples the windows read
    quadrature: np.ndarray  # (windows, kept samples): each window's integral of them


@cache
def _plan(fs: float) -> _Plan:
    """Filters and sizes for rate ``fs``, made once."""
    bands = [
        (b, sos)
        for b, c in enumerate(MODEL_BANDS_HZ)
        if MIN_BAND_HZ <= c <= MAX_BAND_HZ and (sos := octave_band_sos(fs, c)) is not None
    ]
    # the segment runs from `LEAD_S` before the direct sound (nothing is earlier) to the
    # filters' reach past the last window; as long again of zeros after it keeps the FFT's
    # wrap-around (the direct sound's reach backwards) off the windows
    reach = int(np.ceil(RING_PERIODS / MODEL_BANDS_HZ[bands[0][0]] * fs))
    ring = int(np.ceil(LEAD_S * fs))
    length = ring + int(np.ceil(SPAN_S * fs)) + reach
    n_fft = _fft_size(length + reach)
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    power = np.array([np.abs(signal.sosfreqz(sos, worN=freqs, fs=fs)[1]) ** 2 for _, sos in bands])
    kept = int(np.nonzero(np.any(power**2 > 10 ** (KEPT_DB / 10), axis=0))[0][-1]) + 1
    rate = min(n_fft, 2 * fft.next_fast_len(2 * kept, real=True))
    response = power[:, :kept].astype(np.float32)  # single precision: ~1e-7 of an energy
    starts = np.concatenate([[0.0], np.arange(FIRST_S, SPAN_S + 1e-9, WINDOW_S)])
    edges = np.round(starts * fs).astype(np.int64)
    # every path's segment starts `ring` before its direct sound: the windows fall alike in all
    step = n_fft / rate  # full-rate samples per decimated sample
    at = (edges + ring) / step  # the edges on the decimated grid
    window = slice(int(np.floor(at[0])) - 1, int(np.ceil(at[-1])) + 2)
    n = np.arange(window.stop - window.start) + window.start
    # the integral over each window of the samples interpolated linearly, at the full rate
    quadrature = (_hat_integral(at[1:, None] - n) - _hat_integral(at[:-1, None] - n)) * step
    return _Plan(
        [b for b, _ in bands],
        [sos for _, sos in bands],
        ring,
        length,
        n_fft,
        response,
        rate,
        edges,
        window,
        quadrature.astype(np.float32),
    )


def _fft_size(n: int) -> int:
    """The smallest 2^k or 3 x 2^k at least ``n``: at these sizes (~20,000) they measured
    faster than `scipy.fft.next_fast_len`'s products of 2, 3 and 5."""
    k = max(int(np.ceil(np.log2(n))), 2)
    three = 3 * 2 ** (k - 2)
    return three if three >= n else 2**k


def noise_energy(first: np.ndarray, second: np.ndarray, fs: float, bin_samples: int) -> np.ndarray:
    """(equalized bands, bands, bands): the energy per bin of ``bin_samples`` that each
    equalized band's filter (forward and backward) passes of the products of two noise
    tables' bands (bands, samples) at unit amplitude, averaged over their length: entry
    [i, k, j] is the mean of filtered ``first[k]`` times filtered ``second[j]``. With
    ``first`` = ``second``: what `Equalizer` expects of a late part rendered from that
    table (the off-diagonal terms: neighbouring bands overlap)."""
    n = fft.next_fast_len(first.shape[1], real=True)
    a, b = (fft.rfft(x.astype(np.float64), n=n, axis=1) for x in (first, second))
    freqs = np.fft.rfftfreq(n, 1 / fs)
    weight = np.full(len(freqs), 2.0)  # Parseval: the one-sided spectrum counts twice
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    out = []
    for sos in _plan(fs).sos:
        response = np.abs(signal.sosfreqz(sos, worN=freqs, fs=fs)[1]) ** 4
        out.append(np.real((a * (response * weight)) @ b.conj().T))
    return np.array(out) / n / (first.shape[1] / bin_samples)


class Path(NamedTuple):
    """One source-to-capsule path of an IR, as `Equalizer` needs it."""

    early: tuple[np.ndarray, ...]  # its early parts (a pair's two: their mean), from sample 0
    amplitude: np.ndarray  # its late part's amplitude per band and bin, as the envelope gives it
    onset: int  # the direct sound's sample
    noise: np.ndarray  # `noise_energy` of the noise its late part is rendered from
    c50_db: np.ndarray | None  # the room encoder's C50 per model band, or None


class Equalizer:
    """The equalization of an IR's paths (one, or a pair's two or four, done together): the
    windows' targets from each path's early part and envelope; `scaled` measures the late parts
    as rendered and scales their amplitudes. Bin u of a late part is centred ``late_start +
    (u + 1/2) bin_samples``.

    One measurement leaves about a quarter of the draw's effect on C50 (tests/test_equalize.py):
    a quarter of what a band's filter reads of the late part is its neighbours' noise, which
    that band's gain does not scale. A second measurement after the scaling halves the rest
    again, at the cost of one more per path; gains interpolated between the windows' centres
    and solved together did not help.
    """

    def __init__(self, paths: list[Path], bin_samples: int, late_start: int, fs: float) -> None:
        self.plan = plan = _plan(fs)
        self.paths, self.bin_samples, self.late_start = paths, bin_samples, late_start
        self.bands = plan.model_bands
        #: each path's window edges (paths, windows + 1), samples
        self.edges = np.array([p.onset for p in paths])[:, None] + plan.edges
        self._first = self.edges[:, 0] - plan.ring
        self._quadrature = plan.quadrature
        self._early = self._filtered([list(p.early) for p in paths])  # (paths, bands, samples)
        self._early_energy = ee = (self._early * self._early) @ self._quadrature.T
        self.want = ee.copy()  # (paths, bands, windows)
        for i, (path, edges_i) in enumerate(zip(paths, self.edges, strict=True)):
            late = _expected_late(path.amplitude, bin_samples, late_start, edges_i, path.noise)
            want = self.want[i]
            want += late[:, :-1]
            if path.c50_db is not None:
                head = np.asarray(path.c50_db, np.float64)[self.bands]
                rest = want[:, 1:].sum(axis=1) + late[:, -1]
                c50 = 10 * np.log10(want[:, 0] / rest)
                target = c50 + C50_BLEND * (head - c50)
                first = np.maximum(rest * 10 ** (target / 10), ee[i, :, 0] * (1 + MIN_LATE_SHARE))
                want[:, 0] = np.where(np.isfinite(head), first, want[:, 0])

    def gains(self, lates: list[list[np.ndarray]]) -> np.ndarray:
        """The amplitude gains (paths, bands, windows) that bring each path with its late part
        (the mean of ``lates[i]``, samples from 0) to `want` in every window: per window, the
        positive root g of g^2 late + 2 g cross + early = want."""
        late = self._filtered(lates)
        squares, cross = (np.stack([late, self._early]) * late) @ self._quadrature.T
        offset = self._early_energy - self.want  # < 0: the late part's expected energy
        with np.errstate(divide="ignore", invalid="ignore"):
            root = (-cross + np.sqrt(np.maximum(cross * cross - squares * offset, 0.0))) / squares
        return np.clip(np.where(np.isfinite(root) & (root > 0), root, 1.0), *_LIMITS)

    def scaled(self, lates: list[list[np.ndarray]]) -> list[tuple[np.ndarray, slice]]:
        """Each path's amplitude (a copy) with each equalized band's bins scaled by the
        `gains` of the window their centre lies in (before the direct sound: the first's),
        and the bins that changed."""
        out = []
        for path, gains, edges in zip(self.paths, self.gains(lates), self.edges, strict=True):
            amplitude = path.amplitude.copy()
            lo = max(int((edges[0] - self.late_start) // self.bin_samples) - 1, 0)
            hi = min(int((edges[-1] - self.late_start) // self.bin_samples) + 1, amplitude.shape[1])
            centres = self.late_start + (np.arange(lo, hi) + 0.5) * self.bin_samples
            window = np.searchsorted(edges, centres, side="right") - 1
            inside = window < len(edges) - 1
            where = np.ix_(np.asarray(self.bands), lo + np.nonzero(inside)[0])
            amplitude[where] *= gains[:, np.maximum(window[inside], 0)]
            out.append((amplitude, slice(lo, hi)))
        return out

    def _filtered(self, signals: list[list[np.ndarray]]) -> np.ndarray:
        """Each path's segment of the mean of ``signals[i]`` through each band's filter,
        forward and backward, decimated, where the windows are: (paths, bands, samples)."""
        plan = self.plan
        segments = np.zeros((len(signals), plan.length), dtype=np.float32)
        for row, xs, first in zip(segments, signals, self._first, strict=True):
            for x in xs:
                lo, hi = max(first, 0), min(first + plan.length, len(x))
                if hi > lo:
                    row[lo - first : hi - first] += x[lo:hi] / len(xs)
        spectra = fft.rfft(segments, n=plan.n_fft, axis=-1)[:, None, : plan.response.shape[1]]
        filtered = fft.irfft(spectra * plan.response, n=plan.rate)[..., plan.kept]
        return filtered * (plan.rate / plan.n_fft)


def _hat_integral(x: np.ndarray) -> np.ndarray:
    """The integral up to ``x`` of the unit hat max(0, 1 - |t|)."""
    x = np.clip(x, -1.0, 1.0)
    return np.where(x < 0, 0.5 * (x + 1) ** 2, 1 - 0.5 * (1 - x) ** 2)


#: A window's late part is scaled by at most `MAX_GAIN_DB` either way.
_LIMITS = (10 ** (-MAX_GAIN_DB / 20), 10 ** (MAX_GAIN_DB / 20))


def _expected_late(
    amplitude: np.ndarray, bin_samples: int, late_start: int, edges: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """The late energy each equalized band's filter passes on average over noise draws, per
    window and after the last one: (bands, windows + 1). Bin u spans ``late_start + u
    bin_samples`` on; a bin cut by a window edge counts by its share."""
    a = amplitude.astype(np.float64)
    stop = min(a.shape[1], int(np.ceil((edges[-1] - late_start) / bin_samples)) + 1)
    starts = late_start + bin_samples * np.arange(stop)
    inside = np.clip(
        (np.minimum(starts + bin_samples, edges[1:, None]) - np.maximum(starts, edges[:-1, None]))
        / bin_samples,
        0.0,
        1.0,
    )  # (windows, bins)
    after = np.clip((starts + bin_samples - edges[-1]) / bin_samples, 0.0, 1.0)
    head = a[:, :stop]
    per_bin = np.einsum("iku,ku->iu", noise @ head, head)  # a' N a per bin
    tail = a[:, stop:]
    beyond = np.einsum("ikj,kj->i", noise, tail @ tail.T)  # the same summed, past the windows
    return np.hstack([per_bin @ inside.T, (per_bin @ after + beyond)[:, None]])
