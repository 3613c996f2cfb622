"""Tuning of partials: chosen modes on target frequencies, the errors measured in cents.

A musical interval of ratio r is 1200 log2(r) cents (100 cents = one equal-tempered semitone;
Ellis 1885, appendix to Helmholtz, *On the Sensations of Tone*); trained listeners hear about
5 cents, and instrument tuners aim at 1–2 cents. A bar's partials are identified by type, not by
their number: rigid-body modes of a free structure (λ ≈ 0) are skipped, the tuned modes are the
first elastic modes moving mostly in one direction (vertical bending of a bar: across), and later
designs follow each of them by the modal assurance criterion (Allemang & Brown 1982) so that a
longitudinal or torsional mode crossing a bending one does not swap the targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.responses.base import (
    TWO_PI,
    ModalState,
    Partials,
    Response,
    TrackedMode,
    _unit,
    direction_fraction,
    mirror_parity,
    rigid_body_count,
)

logger = logging.getLogger(__name__)

CENTS_PER_LN = 1200.0 / np.log(2.0)  # cents per unit of ln(f)


def cents(frequencies_hz: np.ndarray, targets_hz: np.ndarray) -> np.ndarray:
    """Tuning errors 1200 log2(f / f*) (cents), elementwise."""
    return CENTS_PER_LN * np.log(np.asarray(frequencies_hz, dtype=float) / np.asarray(targets_hz, dtype=float))


def parse_ratios(ratios: str | Sequence[float]) -> np.ndarray:
    """Partial ratios from ``"1:4:10"`` or a sequence, normalised to the first; shape (n,).

    Raises
    ------
    InputError
        Not positive, finite, increasing numbers.
    """
    try:
        values = [float(v) for v in (ratios.split(":") if isinstance(ratios, str) else ratios)]
    except (TypeError, ValueError):
        raise InputError(f"ratios = {ratios!r}; allowed: e.g. '1:4:10' (positive numbers, increasing)") from None
    r = np.asarray(values)
    if r.size < 1 or not np.all(np.isfinite(r)) or not np.all(r > 0) or not np.all(np.diff(r) > 0):
        raise InputError(f"ratios = {ratios!r}; allowed: e.g. '1:4:10' (positive numbers, increasing)")
    return r / r[0]


@dataclass
class TuningCents(Response):
    """Put the first ``len(targets_hz)`` partials of one type on their targets, errors in cents.

    c_j = 1200 log2(f_j / f*_j), with f_j = √λ_j / 2π and dc_j/dλ_j = 600 / (ln 2 · λ_j).

    Mode identity: at the starting design the rigid-body modes (``rigid_body_modes``, or those
    with λ ≈ 0 when None, see :func:`~fem_eigopt.responses.base.rigid_body_count`) are skipped and
    the tuned modes are the first elastic modes whose share of kinetic energy in displacement
    component ``direction`` is at least ``min_share`` (``direction=None``: the first elastic
    modes); afterwards each is followed by MAC against its shape at the previous design
    (:class:`~fem_eigopt.responses.base.TrackedMode`).

    Formulations (``method``):

    * ``"bound"`` (default): minimax, min β subject to ±c_j/s − β ≤ 0 (the bound formulation of
      Bendsøe, Olhoff & Taylor 1983 for a max of smooth functions; one bound variable β, 2n
      constraints): every partial within β·s cents, a smooth problem for MMA;
    * ``"least_squares"``: min Σ w_j (c_j / s)².

    ``s = scale_cents`` keeps the numbers of order one for MMA.

    Parameters
    ----------
    targets_hz : sequence of float (n,)
        Target frequencies (Hz), ascending.
    rigid_body_modes : int or None
        Leading modes to skip (3 for a free 2D body, 6 in 3D); None: counted.
    direction : int or None
        Displacement component of the tuned partials (1 = y: vertical bending of a bar lying
        along x with its thickness along y).
    min_share : float
        Smallest share of kinetic energy in ``direction`` of a tuned partial (0 < share ≤ 1).
    method : {"bound", "least_squares"}
    scale_cents : float
        Cents per unit of the optimiser's numbers.
    weights : sequence of float (n,), optional
        Weights of the least-squares terms.
    extra_modes : int
        Modes beyond the tuned ones that the modal solve computes (so that a mode of another type
        among them does not hide a partial).
    mirror : (int, float) or None
        ``(axis, center)``: the tuned partials must also be symmetric under the mirror about that
        plane (parity > 1/2, :func:`~fem_eigopt.responses.base.mirror_parity`). In 3D this tells
        vertical bending (symmetric about the bar's mid-plane across its width) from torsion,
        which also moves vertically.

    Notes
    -----
    ``state.info`` gets ``tuning_cents``, ``tuning_frequencies_hz``, ``tuning_targets_hz`` and
    ``tuning_modes`` (1-based mode numbers), copied into the evaluation's ``info``.
    """

    targets_hz: Sequence[float] = ()
    rigid_body_modes: int | None = None
    direction: int | None = 1
    min_share: float = 0.5
    method: str = "bound"
    scale_cents: float = 100.0
    weights: Sequence[float] | None = None
    extra_modes: int = 3
    mirror: tuple | None = None
    _tracked: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.targets_hz, dtype=float)
        if t.ndim != 1 or t.size < 1 or not np.all(np.isfinite(t)) or not np.all(t > 0):
            raise InputError(f"TuningCents.targets_hz = {self.targets_hz!r}; allowed: frequencies > 0 (Hz)")
        self.targets_hz = tuple(float(v) for v in t)
        if self.rigid_body_modes is not None and not (isinstance(self.rigid_body_modes, (int, np.integer))
                                                      and self.rigid_body_modes >= 0):
            raise InputError(f"TuningCents.rigid_body_modes = {self.rigid_body_modes!r}; allowed: None or an integer >= 0")
        if self.method not in ("bound", "least_squares"):
            raise InputError(f"TuningCents.method = {self.method!r}; allowed: 'bound', 'least_squares'")
        if not (0 < self.min_share <= 1):
            raise InputError(f"TuningCents.min_share = {self.min_share!r}; allowed: 0 < share <= 1")
        if not (np.isfinite(self.scale_cents) and self.scale_cents > 0):
            raise InputError(f"TuningCents.scale_cents = {self.scale_cents!r}; allowed: a number > 0")
        n = len(self.targets_hz)
        w = np.ones(n) if self.weights is None else np.asarray(self.weights, dtype=float)
        if w.shape != (n,) or not np.all(w > 0):
            raise InputError(f"TuningCents.weights = {self.weights!r}; allowed: {n} numbers > 0")
        self._w = w
        rigid = 6 if self.rigid_body_modes is None else int(self.rigid_body_modes)
        self.max_mode = rigid + n + int(self.extra_modes)
        self.n_bounds = 1 if self.method == "bound" else 0
        self.name = "tuning_cents"

    # ------------------------------------------------------------------ mode identity
    def select_modes(self, state: ModalState) -> list[int]:
        """0-based indices of the tuned partials at ``state`` by type (no tracking).

        Raises
        ------
        InputError
            Fewer matching modes than targets among the computed ones.
        """
        n_rigid = rigid_body_count(state.eigenvalues) if self.rigid_body_modes is None else int(self.rigid_body_modes)
        candidates = np.arange(n_rigid, state.eigenvalues.size)
        candidates = _of_type(state, candidates, self.direction, self.min_share, self.mirror, +1)
        n = len(self.targets_hz)
        if candidates.size < n:
            raise InputError(f"TuningCents found {candidates.size} mode(s) of the tuned type among the "
                             f"{state.eigenvalues.size} computed ({n_rigid} rigid-body skipped); allowed: "
                             f"analysis.n_modes large enough for {n} partials")
        return [int(i) for i in candidates[:n]]

    def prepare(self, state: ModalState) -> np.ndarray:
        idx = self.select_modes(state)
        self._tracked = []
        for i in idx:
            tm = TrackedMode(start_mode=i + 1, update=True)
            tm.prepare(state)
            self._tracked.append(tm)
        if self.method == "bound":
            c = self._cents(state, idx)
            return np.array([np.max(np.abs(c)) / self.scale_cents * 1.001 + 1e-6])
        return np.zeros(0)

    def bound_limits(self) -> list[tuple[float, float]]:
        return [(0.0, 50.0)] if self.method == "bound" else []

    def restart_bounds(self, state: ModalState, bounds: np.ndarray) -> np.ndarray:
        if self.method != "bound":
            return bounds
        c = self._cents(state, self.modes(state))
        return np.array([np.max(np.abs(c)) / self.scale_cents * 1.001 + 1e-6])

    def modes(self, state: ModalState) -> list[int]:
        """0-based indices of the tuned partials at ``state``, followed by MAC."""
        if not self._tracked:
            return self.select_modes(state)
        idx = [tm.index(state) for tm in self._tracked]
        if len(set(idx)) < len(idx):
            fallback = self.select_modes(state)
            logger.warning("tuning: two partials matched the same mode %s by MAC; using modes %s by type",
                           [i + 1 for i in idx], [i + 1 for i in fallback])
            idx = fallback
        return idx

    def _cents(self, state: ModalState, idx: list[int]) -> np.ndarray:
        lam = np.maximum(state.eigenvalues[idx], 1e-300)
        return CENTS_PER_LN * (0.5 * np.log(lam) - np.log(TWO_PI * np.asarray(self.targets_hz)))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        idx = self.modes(state)
        k = state.eigenvalues.size
        lam = np.maximum(state.eigenvalues[idx], 1e-300)
        c = self._cents(state, idx)
        dc = 0.5 * CENTS_PER_LN / lam  # dc_j/dλ_j
        state.info["tuning_cents"] = c.tolist()
        state.info["tuning_frequencies_hz"] = (np.sqrt(lam) / TWO_PI).tolist()
        state.info["tuning_targets_hz"] = list(self.targets_hz)
        state.info["tuning_modes"] = [i + 1 for i in idx]
        s = self.scale_cents
        if self.method == "least_squares":
            d = np.zeros(k)
            value = 0.0
            for j, i in enumerate(idx):
                value += self._w[j] * (c[j] / s) ** 2
                d[i] += self._w[j] * 2.0 * c[j] / s**2 * dc[j]
            return [Partials(float(value), d_eigenvalues=d, name=self.name)]
        beta = float(bounds[0])
        out = [Partials(beta, d_bounds={0: 1.0}, name=self.name)]
        for j, i in enumerate(idx):
            d = np.zeros(k)
            d[i] = dc[j] / s
            out.append(Partials(c[j] / s - beta, d_eigenvalues=d, d_bounds={0: -1.0}, name=f"cents{j + 1}_high"))
            out.append(Partials(-c[j] / s - beta, d_eigenvalues=-d, d_bounds={0: -1.0}, name=f"cents{j + 1}_low"))
        return out


def _of_type(state: ModalState, candidates: np.ndarray, direction: int | None, min_share: float,
             mirror: tuple | None, parity: int) -> np.ndarray:
    """The candidates (0-based mode indices) with ≥ ``min_share`` of their kinetic energy in
    ``direction`` and, with ``mirror = (axis, center)``, parity of sign ``parity`` (> 1/2 in size)."""
    if direction is not None and candidates.size:
        share = direction_fraction(state.model, state.vectors[:, candidates], state.mass_matrix, direction)
        candidates = candidates[share >= min_share]
    if mirror is not None and candidates.size:
        par = mirror_parity(state.model, state.vectors[:, candidates], state.mass_matrix, int(mirror[0]),
                            float(mirror[1]))
        candidates = candidates[parity * par > 0.5]
    return candidates


@dataclass
class KeepAwayCents(Response):
    """Keep one mode of another type (e.g. the first torsional mode) at least ``min_cents`` away
    from every partial tuned by a :class:`TuningCents`.

    The mode is the first elastic mode with ≥ ``min_share`` of its kinetic energy in ``direction``
    and mirror parity ``parity`` (−1: antisymmetric, torsion of a bar about its length), followed
    by MAC. Keeping out of a band is not a convex condition, so the mode keeps the side of each
    partial it starts on (as :class:`~fem_eigopt.responses.eigenvalue.KeepOutBand`): between tuned
    partials j and j+1 it is held above f_j · 2^(d/1200) and below f_(j+1) · 2^(−d/1200);
    constraints ``(d − |c_t − c_j|) / s ≤ 0`` with the signed interval c_t − c_j = 1200 log2(f_t/f_j).
    The tuned partials are read from ``state.info["tuning_modes"]``: the :class:`TuningCents`
    must be the objective or an earlier constraint.

    Parameters
    ----------
    min_cents : float
        Smallest distance d (cents).
    direction, min_share, mirror, parity
        The mode's type (see :class:`TuningCents`); ``mirror`` is required.
    rigid_body_modes : int or None
        As for :class:`TuningCents`.
    scale_cents : float
        Cents per unit of the constraint values.

    Notes
    -----
    ``state.info["keep_away_cents"]``: the intervals c_t − c_j (cents) and ``keep_away_mode``.
    """

    min_cents: float = 50.0
    direction: int | None = 1
    min_share: float = 0.3
    mirror: tuple | None = None
    parity: int = -1
    rigid_body_modes: int | None = None
    scale_cents: float = 100.0
    extra_modes: int = 6

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_cents) and self.min_cents > 0):
            raise InputError(f"KeepAwayCents.min_cents = {self.min_cents!r}; allowed: a number > 0 (cents)")
        if self.mirror is None:
            raise InputError("KeepAwayCents.mirror is None; allowed: (axis, center) of the mirror plane that "
                             "tells the mode's type")
        if self.parity not in (-1, 1):
            raise InputError(f"KeepAwayCents.parity = {self.parity!r}; allowed: -1 or 1")
        rigid = 6 if self.rigid_body_modes is None else int(self.rigid_body_modes)
        self.max_mode = rigid + int(self.extra_modes)
        self.name = "keep_away_cents"
        self._tracked: TrackedMode | None = None
        self._sides: list[int] = []

    def _find(self, state: ModalState) -> int:
        n_rigid = rigid_body_count(state.eigenvalues) if self.rigid_body_modes is None else int(self.rigid_body_modes)
        found = _of_type(state, np.arange(n_rigid, state.eigenvalues.size), self.direction, self.min_share,
                         self.mirror, self.parity)
        if not found.size:
            raise InputError(f"KeepAwayCents found no mode of its type among the {state.eigenvalues.size} computed; "
                             "allowed: analysis.n_modes large enough")
        return int(found[0])

    def _intervals(self, state: ModalState) -> tuple[int, list[int], np.ndarray]:
        if "tuning_modes" not in state.info:
            raise InputError("KeepAwayCents needs a TuningCents objective (or an earlier constraint)")
        tuned = [m - 1 for m in state.info["tuning_modes"]]
        t = self._tracked.index(state) if self._tracked is not None else self._find(state)
        lam = np.maximum(state.eigenvalues, 1e-300)
        c = 0.5 * CENTS_PER_LN * (np.log(lam[t]) - np.log(lam[tuned]))
        return t, tuned, c

    def prepare(self, state: ModalState) -> np.ndarray:
        t = self._find(state)
        self._tracked = TrackedMode(start_mode=t + 1, update=True)
        self._tracked.prepare(state)
        self._sides = []
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        t, tuned, c = self._intervals(state)
        if not self._sides:
            self._sides = [1 if cj >= 0 else -1 for cj in c]
            logger.info("keep-away: mode %d starts at %s cents from the tuned partials %s", t + 1,
                        np.round(c, 1).tolist(), [j + 1 for j in tuned])
        state.info["keep_away_cents"] = c.tolist()
        state.info["keep_away_mode"] = t + 1
        k = state.eigenvalues.size
        lam = np.maximum(state.eigenvalues, 1e-300)
        s = self.scale_cents
        out = []
        for j, (i, cj, side) in enumerate(zip(tuned, c, self._sides)):
            # side · c_j ≥ d  ⇔  (d − side · c_j)/s ≤ 0
            d = side * 0.5 * CENTS_PER_LN * (_unit(k, t, 1.0 / lam[t]) - _unit(k, i, 1.0 / lam[i]))
            out.append(Partials((self.min_cents - side * cj) / s, d_eigenvalues=-d / s,
                                name=f"keep_away_partial{j + 1}"))
        return out
