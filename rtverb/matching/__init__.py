"""Match a room to a target IR or target numbers: `match` finds an editable room inside the model
domain whose synthesized IR has the target's T30, EDT, C50 per band and DRR."""

from rtverb.matching.fit import Match, match
from rtverb.matching.target import MatchError, Target, target_from_ir, target_from_text

__all__ = ["Match", "MatchError", "Target", "match", "target_from_ir", "target_from_text"]
