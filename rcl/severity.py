"""The clinical severity matrix ``M[true, predicted]`` (docs/FORMULAS.md).

``severity_matrix`` builds the paper's matrix from α (false alarm) and β (miss).
:class:`SeverityMatrix` is the validated, per-cell editable form a clinician works with, bound to
its taxonomy and serialisable to JSON. Anything that takes a matrix accepts either.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcl.errors import DataWarning
from rcl.paper import PROPOSED_ALPHA, PROPOSED_BETA
from rcl.taxonomy import Taxonomy


def _check_penalty(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def severity_matrix(taxonomy: Taxonomy, alpha: float = PROPOSED_ALPHA, beta: float = PROPOSED_BETA) -> np.ndarray:
    """K × K matrix: 1 within a superclass (diagonal included), α for an over-call, β for an under-call.

    With two superclasses this is exactly the paper's matrix: α where benign is predicted malignant (Type I),
    β where malignant is predicted benign (Type II). With more ordered superclasses, every
    over-call costs α and every under-call β (a choice the paper leaves open; graded costs can be set
    per cell with :meth:`SeverityMatrix.with_cell`).
    """
    alpha = _check_penalty("alpha", alpha)
    beta = _check_penalty("beta", beta)
    s = np.asarray(taxonomy.superclass)
    true_s, pred_s = s[:, None], s[None, :]
    return np.where(pred_s > true_s, alpha, np.where(pred_s < true_s, beta, 1.0)).astype(np.float64)


def validate_matrix(values, taxonomy: Taxonomy) -> np.ndarray:
    """Return ``values`` as a float64 K × K array, or raise ``ValueError`` naming what is wrong."""
    k = taxonomy.num_classes
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"severity matrix must be numbers; {exc}") from exc
    if array.shape != (k, k):
        raise ValueError(
            f"severity matrix must be {k} × {k} for taxonomy {taxonomy.name!r} "
            f"({', '.join(taxonomy.classes)}), got shape {array.shape}"
        )
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"severity matrix cell [true={taxonomy.classes[i]}, predicted={taxonomy.classes[j]}] "
            f"is {float(array[i, j])}; every cell must be a finite number >= 0"
        )
    if k > 1 and not (array[~np.eye(k, dtype=bool)] > 0).any():
        raise ValueError(
            "severity matrix has 0 in every off-diagonal cell: every mistake would be free, so the "
            "risk-calibrated decision would answer the first class for every image; give mistakes a cost > 0"
        )
    return array


def unreachable_classes(values) -> list[int]:
    """Indices of the classes the minimum-expected-cost decision never picks, whatever the
    probabilities (at most on an exact tie).

    Class k is reachable when some probability vector p makes its expected cost p·C[:, k] strictly
    lower than every other column's; a small linear programme per class (maximise the margin t
    with p·(C[:, j] - C[:, k]) >= t for all j != k, p on the simplex) says whether one exists.
    """
    from scipy.optimize import linprog

    costs = cost_matrix(values)
    k = costs.shape[0]
    scale = float(costs.max()) or 1.0
    never = []
    for target in range(k):
        others = [j for j in range(k) if j != target]
        # variables (p_0..p_{K-1}, t); minimise -t; t - p·(C[:, j] - C[:, target]) <= 0
        a_ub = np.hstack([-(costs[:, others] - costs[:, [target]]).T, np.ones((len(others), 1))])
        result = linprog(np.r_[np.zeros(k), -1.0], A_ub=a_ub, b_ub=np.zeros(len(others)),
                         A_eq=np.r_[np.ones(k), 0.0][None, :], b_eq=[1.0],
                         bounds=[(0, None)] * k + [(None, scale)], method="highs")
        if result.status == 0 and -result.fun <= 1e-9 * scale:
            never.append(target)
    return never


def decision_warnings(values, taxonomy: Taxonomy) -> list[str]:
    """Plain-language warnings for a valid but degenerate matrix (empty when it is sound)."""
    never = unreachable_classes(validate_matrix(values, taxonomy))
    if not never:
        return []
    names = ", ".join(taxonomy.classes[i] for i in never)
    reachable = [c for i, c in enumerate(taxonomy.classes) if i not in never]
    if len(reachable) == 1:
        return [f"under this severity matrix the risk-calibrated decision answers {reachable[0]} for every "
                f"image: it can never answer {names}"]
    return [f"under this severity matrix the risk-calibrated decision can never answer {names} (some "
            "other answer always costs less or the same): check the cells of those columns"]


def penalty_warnings(values, taxonomy: Taxonomy) -> list[str]:
    """Warnings for costs that are valid but turn the decision against its purpose.

    The false-alarm cost α and the miss cost β are read from the cells (the smallest over-call and
    under-call cell, so a per-cell matrix is judged by its cheapest mistake of each kind): β = 0 (a
    miss is free: CER can reach 100%), β < 1 (a miss costs less than a confusion inside a
    superclass), β < α (a miss costs less than a false alarm), α = 0 (a false alarm is free:
    benign cases may all be called malignant). Then the classes the decision can never answer.
    """
    array = validate_matrix(values, taxonomy)
    s = np.asarray(taxonomy.superclass)
    over, under = s[None, :] > s[:, None], s[None, :] < s[:, None]
    alpha = float(array[over].min()) if over.any() else None
    beta = float(array[under].min()) if under.any() else None
    out = []
    if beta == 0:
        out.append("β = 0: a miss costs nothing, so the decision may call every malignant case benign "
                   "(CER up to 100%); give a miss a cost of at least 1")
    elif beta is not None and beta < 1:
        out.append(f"β = {beta:g} < 1: a miss costs less than a confusion between two benign (or two "
                   "malignant) classes; a miss is normally the costliest mistake")
    if beta is not None and alpha is not None and beta < alpha:
        out.append(f"β = {beta:g} < α = {alpha:g}: a miss costs less than a false alarm, so the decision "
                   "leans towards benign answers and misses more malignant cases")
    if alpha == 0:
        out.append("α = 0: a false alarm costs nothing, so the decision may call every benign case "
                   "malignant (accuracy collapses); give a false alarm a cost above 0")
    return out + decision_warnings(array, taxonomy)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_cells(cells, taxonomy: Taxonomy) -> np.ndarray:
    """A K × K table of typed cell texts as numbers, each read exactly as typed (``"1e9"`` is
    10⁹, ``"2.5"`` is 2.5) or refused naming the cell: no thousands separators, commas or words."""
    rows = [list(row) for row in cells]
    k = taxonomy.num_classes
    if len(rows) != k or any(len(row) != k for row in rows):
        raise ValueError(f"severity matrix must be {k} × {k} for {', '.join(taxonomy.classes)}")
    values = np.empty((k, k))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            text = "" if cell is None else str(cell).strip()
            if not _NUMBER.fullmatch(text):
                raise ValueError(
                    f"cell [true={taxonomy.classes[i]}, predicted={taxonomy.classes[j]}] reads {text!r}: type a "
                    "plain number such as 2, 2.5 or 1e3 (a point for decimals, no commas or spaces)")
            values[i, j] = float(text)
    return validate_matrix(values, taxonomy)


@dataclass(frozen=True, eq=False)
class SeverityMatrix:
    """A validated severity matrix bound to its taxonomy.

    ``alpha``/``beta`` record the sliders it was built from; after a per-cell edit they are kept
    for display, but ``values`` is the truth.
    """

    taxonomy: Taxonomy
    values: np.ndarray
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        array = validate_matrix(self.values, self.taxonomy)
        array.setflags(write=False)
        object.__setattr__(self, "values", array)

    @classmethod
    def from_penalties(
        cls, taxonomy: Taxonomy, alpha: float = PROPOSED_ALPHA, beta: float = PROPOSED_BETA
    ) -> SeverityMatrix:
        return cls(taxonomy, severity_matrix(taxonomy, alpha, beta), float(alpha), float(beta))

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SeverityMatrix)
            and self.taxonomy == other.taxonomy
            and np.array_equal(self.values, other.values)
        )

    def with_cell(self, true: str | int, predicted: str | int, value: float) -> SeverityMatrix:
        """A copy with one cell changed, validated (class names or indices)."""
        i = true if isinstance(true, int) else self.taxonomy.index(true)
        j = predicted if isinstance(predicted, int) else self.taxonomy.index(predicted)
        values = self.values.copy()
        values[i, j] = value
        return SeverityMatrix(self.taxonomy, values, self.alpha, self.beta)

    def with_values(self, values) -> SeverityMatrix:
        return SeverityMatrix(self.taxonomy, values, self.alpha, self.beta)

    @property
    def is_standard(self) -> bool:
        """True when the values are exactly those the α/β sliders produce (no per-cell edits)."""
        if self.alpha is None or self.beta is None:
            return False
        return np.array_equal(self.values, severity_matrix(self.taxonomy, self.alpha, self.beta))

    @property
    def penalties(self) -> tuple[float, float]:
        """``(α, β)`` this matrix was built from; the paper's proposed pair where it records none."""
        return (PROPOSED_ALPHA if self.alpha is None else self.alpha,
                PROPOSED_BETA if self.beta is None else self.beta)

    def for_taxonomy(self, taxonomy: Taxonomy) -> SeverityMatrix:
        """This matrix for ``taxonomy``: itself when the classes match, else the same α/β applied to
        the other classes (per-cell edits cannot carry over to other classes)."""
        if taxonomy.classes == self.taxonomy.classes:
            return self
        return SeverityMatrix.from_penalties(taxonomy, *self.penalties)

    def to_dict(self) -> dict:
        return {
            "taxonomy": self.taxonomy.to_dict(),
            "alpha": self.alpha,
            "beta": self.beta,
            "classes": list(self.taxonomy.classes),
            "values": self.values.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping, taxonomy: Taxonomy | None = None) -> SeverityMatrix:
        """Read a matrix; with ``taxonomy`` given, the file's classes must match it (names, order)."""
        if not isinstance(data, Mapping) or "values" not in data:
            raise ValueError("a severity matrix JSON needs a 'values' K × K list (and 'taxonomy' or 'classes')")
        stored = data.get("taxonomy")
        if stored is not None and not isinstance(stored, Mapping):
            raise ValueError(
                f"the severity matrix's 'taxonomy' field must be an object with 'classes' "
                f"([{{'name': ..., 'superclass': ...}}, ...]), got {type(stored).__name__} {stored!r:.60}; "
                "to name the classes only, use a 'classes' list"
            )
        stored = Taxonomy.from_dict(stored) if stored is not None else None
        if taxonomy is None:
            if stored is None:
                raise ValueError("this severity matrix JSON names no taxonomy; give one")
            taxonomy = stored
        file_classes = data.get("classes") or (list(stored.classes) if stored else None)
        if file_classes is not None:
            _check_same_classes(file_classes, taxonomy)
        matrix = cls(taxonomy, data["values"], data.get("alpha"), data.get("beta"))
        for message in decision_warnings(matrix.values, taxonomy):
            warnings.warn(message, DataWarning, stacklevel=2)
        return matrix

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, taxonomy: Taxonomy | None = None) -> SeverityMatrix:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"severity matrix JSON is not valid JSON: {exc}") from exc
        return cls.from_dict(data, taxonomy)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path, taxonomy: Taxonomy | None = None) -> SeverityMatrix:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"severity matrix file {str(path)!r} does not exist")
        return cls.from_json(path.read_text(), taxonomy)


def _check_same_classes(names: Sequence[str], taxonomy: Taxonomy) -> None:
    try:
        indices = [taxonomy.index(n) for n in names]
    except ValueError as exc:
        raise ValueError(f"severity matrix does not fit the data's classes: {exc}") from exc
    if indices != list(range(taxonomy.num_classes)):
        raise ValueError(
            f"severity matrix classes ({', '.join(map(str, names))}) do not match the data's classes "
            f"({', '.join(taxonomy.classes)}) in number and order"
        )


def as_matrix(matrix, taxonomy: Taxonomy | None = None) -> np.ndarray:
    """A float64 K × K array from a :class:`SeverityMatrix` or array-like, validated when a taxonomy is given."""
    if isinstance(matrix, SeverityMatrix):
        if taxonomy is not None and matrix.taxonomy.classes != taxonomy.classes:
            _check_same_classes(matrix.taxonomy.classes, taxonomy)
        return matrix.values
    if taxonomy is not None:
        return validate_matrix(matrix, taxonomy)
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"severity matrix must be square K × K, got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        i, j = map(int, np.argwhere(~np.isfinite(array) | (array < 0))[0])
        raise ValueError(f"severity matrix cell [{i}, {j}] is {float(array[i, j])}; every cell must be finite and >= 0")
    return array


def cost_matrix(matrix) -> np.ndarray:
    """Decision costs from a severity matrix: the same off the diagonal, 0 on it (a correct call is free)."""
    costs = as_matrix(matrix).copy()
    np.fill_diagonal(costs, 0.0)
    return costs
