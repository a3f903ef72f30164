"""Stage 4a, live monitoring: the audio process (`audio`) running the callback (`callback`),
prepared IRs handed to it through shared memory (`slots`), file I/O off the audio thread
(`io`), room changes off the audio thread (`worker`), the running session (`app`) and what it
shows (`report`)."""
