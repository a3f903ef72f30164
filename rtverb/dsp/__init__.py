"""Stage 3, streaming DSP: the partition plan (`partition`), the partitioned convolver
(`convolver`) and the reverb's signal path around it (`engine`)."""
