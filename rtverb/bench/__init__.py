"""Benchmarks that print figures: per-block cost (`engine`, `report`), room change -> IR
(`synth`), knob-to-ear latency (`knob`), offline rendering (`render`)."""
