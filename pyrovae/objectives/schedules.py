"""Annealing schedules: pure functions of the training progress t (epochs, fractional).

Each returns a weight in [0, 1] that an objective multiplies into its own target value
(β for a KL warm-up, the capacity C for the capacity-annealed β-VAE). The trainer sets
the progress before every step (``Objective.set_progress``): t = epoch + step / steps,
so t = 0 at the very first step.
"""

from __future__ import annotations

import math

from ..options import check_choice, check_int, check_nonnegative, check_positive

WARMUPS = ("none", "linear", "cyclical")


def constant(t: float) -> float:
    """w(t) = 1: no warm-up."""
    return 1.0


def linear(t: float, epochs: float) -> float:
    """Linear warm-up (Bowman et al. 2016; Sønderby et al. 2016):

        w(t) = min(1, t / epochs)

    exactly 0 at t = 0, 1 from t = ``epochs`` on; ``epochs = 0`` gives 1 throughout.
    """
    if epochs <= 0:
        return 1.0
    return min(1.0, max(0.0, t) / epochs)


def cyclical(t: float, epochs: float, cycles: int, ratio: float) -> float:
    """Cyclical warm-up (Fu et al. 2019, "Cyclical annealing schedule: a simple approach
    to mitigating KL vanishing"): ``cycles`` cycles of length L = epochs / cycles; within a
    cycle, with τ = (t mod L) / L the position in it,

        w(t) = min(1, τ / ratio)          for t < epochs,
        w(t) = 1                          for t >= epochs,

    i.e. a linear rise from 0 over the first ``ratio`` of each cycle, then 1 for the rest.
    ``ratio = 1`` is a saw-tooth. Fu et al. use 4 cycles and ratio 0.5.
    """
    if t >= epochs:
        return 1.0
    length = epochs / cycles
    pos = max(0.0, t) / length
    tau = pos - math.floor(pos)
    return min(1.0, tau / ratio)


def warmup_schedule(kind: str, *, epochs: float, cycles: int, ratio: float):
    """The warm-up ``kind`` (``none``, ``linear``, ``cyclical``) as a function t -> w(t),
    with its options checked (a ``ValueError`` names the bad option)."""
    check_choice("warmup", kind, WARMUPS)
    # 0 epochs: no warm-up (w = 1 throughout) for none/linear; a cycle needs a length
    epochs = (check_positive if kind == "cyclical" else check_nonnegative)("warmup_epochs", epochs)
    cycles = check_int("cycles", cycles)
    ratio = check_positive("cycle_ratio", ratio)
    if ratio > 1:
        raise ValueError(f"cycle_ratio must be in (0, 1] (the fraction of a cycle spent rising), "
                         f"got {ratio!r}")
    if kind == "linear":
        return lambda t: linear(t, epochs)
    if kind == "cyclical":
        return lambda t: cyclical(t, epochs, cycles, ratio)
    return constant


def ramp(t: float, start: float, end: float, epochs: float) -> float:
    """A value moving linearly from ``start`` at t = 0 to ``end`` at t = ``epochs``, then held:

        v(t) = start + (end - start) · min(1, t / epochs)

    (the capacity C(t) of Burgess et al. 2018). ``epochs = 0`` gives ``end`` throughout.
    """
    return start + (end - start) * linear(t, epochs)
