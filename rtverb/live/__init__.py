"""Stage 4a, live monitoring: the audio callback (`callback`), file I/O off the audio thread
(`io`), room changes off the audio thread (`worker`), the running session (`app`) and what it
shows (`report`)."""
