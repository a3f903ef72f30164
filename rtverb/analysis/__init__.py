"""Measuring impulse responses (`acoustics`, ISO 3382-1) and drawing them (`plot`)."""
