"""Stage 4b, offline: render files through pedalboard chains (`render`, `chain`, `audio_io`),
rtverb rooms as pedalboard plugins (`pedalboard_room`), the bundled demo clip (`demo`)."""
