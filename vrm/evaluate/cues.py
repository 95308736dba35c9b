"""Spurious-cue stress test: a cue that carries no quality, planted on one side of each pair.

A cue is a template with one "{response}" placeholder, for example a fixed polite opening
"Thank you for asking!\\n\\n{response}" or markdown emphasis "**{response}**". For a
training set and a rate rho, every train and validation pair gets the cue on its chosen
response with probability rho and on its rejected response otherwise, so at rho = 0.5 the
cue carries no information about the label and at rho = 1 it predicts the label perfectly.
Test pairs are scored clean (`cue/clean@RHO`) and with the cue on the rejected response
(`cue/reversed@RHO`): a model that learned the cue loses accuracy on the reversed pairs.

The side of a pair is drawn from a hash of (seed, cue name, pair id) as a uniform u in
[0, 1), and the cue goes on the chosen response when u < rho. One u per pair serves every
rho, so the chosen-side pairs at a lower rho stay chosen-side at every higher rho, and the
draw does not depend on the order of the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from vrm.errors import UserError

PLACEHOLDER = "{response}"


def check_template(name: str, template: str) -> None:
    """Raise UserError unless `template` contains the placeholder exactly once."""
    if template.count(PLACEHOLDER) != 1:
        raise UserError(
            f"config: cues.templates.{name} = {template!r} must contain {PLACEHOLDER} exactly once, "
            "where the response goes (for example \"Thank you for asking! {response}\")"
        )


def apply_cue(template: str, response: str) -> str:
    """Put `response` into the cue template. Braces inside the response are kept as they are."""
    before, after = template.split(PLACEHOLDER)
    return before + response + after


def cue_draws(pair_ids: Iterable[str], cue: str, seed: int = 0) -> np.ndarray:
    """Return one uniform draw in [0, 1) per pair, fixed by (seed, cue, pair id)."""
    draws = []
    for pair_id in pair_ids:
        digest = hashlib.sha256(f"{seed}\x1f{cue}\x1f{pair_id}".encode("utf-8")).digest()
        draws.append(int.from_bytes(digest[:8], "big") / 2.0**64)
    return np.asarray(draws, dtype=np.float64)


def cue_on_chosen(pair_ids: Iterable[str], cue: str, rho: float, seed: int = 0) -> np.ndarray:
    """True where the cue goes on the chosen response, for a cue rate `rho`."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    return cue_draws(pair_ids, cue, seed) < rho


def rho_label(rho: float) -> str:
    """Format rho as in benchmark names and paths: 0.5 -> "0.5", 1 -> "1.0"."""
    return repr(float(rho))


def benchmark_names(rho: float) -> tuple[str, str]:
    """Return the names of the clean and the reversed test benchmarks at `rho`."""
    return f"cue/clean@{rho_label(rho)}", f"cue/reversed@{rho_label(rho)}"
