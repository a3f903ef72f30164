"""The one "did you mean" hint for an unknown name (a material, a preset, a room-file key, an OSC
address or parameter, a plugin or its parameter); in `room`, the lowest stage that needs it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str], most: int = 3) -> str:
    """`` Did you mean 'a' or 'b'?`` for the choices close to ``word``, or ``""`` for none.

    It starts with a space and ends a sentence: append it to a message that ends with ``.``.
    """
    close = difflib.get_close_matches(word, list(choices), n=most, cutoff=0.5)
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    names = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" Did you mean {names}?"
