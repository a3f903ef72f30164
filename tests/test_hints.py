"""The one "did you mean" hint (`rtverb.room.hints`)."""

from rtverb.room.hints import did_you_mean
from rtverb.room.params import SURFACES


def test_did_you_mean_names_the_close_choices_or_nothing() -> None:
    assert did_you_mean("flor", SURFACES) == " Did you mean 'floor'?"
    assert did_you_mean("wst", ["west", "east", "floor"]) == " Did you mean 'west' or 'east'?"
    assert did_you_mean("xyz", SURFACES) == ""
