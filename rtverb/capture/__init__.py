"""Capture an impulse response: a pedalboard chain offline (`chain`), a sound card (`device`), or
a dry and a processed recording (`drywet`), all by the exponential sine sweep of `sweep`."""

from rtverb.capture.chain import Capture, capture_chain
from rtverb.capture.device import capture_device
from rtverb.capture.drywet import capture_dry_wet
from rtverb.capture.sweep import CaptureError

__all__ = ["Capture", "CaptureError", "capture_chain", "capture_device", "capture_dry_wet"]
