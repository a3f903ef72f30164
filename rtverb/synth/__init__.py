"""Stage 2, room -> impulse response: exact early part (`early`), what the model sees
(`features`), the envelope model (`model`), the late part (`late`), the whole IR (`ir`), and a
child process that runs it off the audio process (`process`)."""

from rtverb.synth.ir import render_ir, render_room, synthesize, synthesize_analytic
from rtverb.synth.model import MODEL_PATH, ModelError, Synthesizer, default_synthesizer

__all__ = [
    "MODEL_PATH",
    "ModelError",
    "Synthesizer",
    "default_synthesizer",
    "render_ir",
    "render_room",
    "synthesize",
    "synthesize_analytic",
]
