"""Rates where an octave band's filter has no FFT bin (above ~200 kHz) rendered all-NaN IRs."""

from __future__ import annotations

import numpy as np
import pytest

from rtverb import synth
from rtverb.room.room import Room
from rtverb.synth import features
from rtverb.synth.early import band_filters
from rtverb.synth.physics import RoomPhysics


@pytest.mark.parametrize("fs", [256000, 384000])
def test_a_band_without_filter_bins_is_silent_not_nan(fs: int) -> None:
    assert not np.any(band_filters(fs), axis=1).all()  # the case: one band's filter is zero
    physics = RoomPhysics.of(Room())
    ir = synth.render_ir(physics, features.analytic_envelope_db(physics), fs)
    assert np.all(np.isfinite(ir)) and np.abs(ir).max() > 0
