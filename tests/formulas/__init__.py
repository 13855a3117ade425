"""Parameter counts from the papers, one file per attention family.

Each family file defines three tables:

- ``PAPER``: ``{"Name": lambda c: <count at c channels>}``, the paper's formula (or the official code's, where the
  paper gives none) written as its terms: weights, biases, norm affines. It must hold exactly at
  :data:`REFERENCE_C`, where every ratio and group count divides C and no floor or clamp applies.
- ``DEPARTURES``: ``{"Name": {"what the code changes": lambda c: <parameters it adds (+) or removes (-)>}}``, the
  named structural differences from the paper that hold at every width (a dropped BatchNorm, a bias in its place,
  a block's LayerNorm kept inside the module).
- ``CLAMPED``: ``{"Name": <count at SMALL_C>}`` for the modules whose floors or clamps apply at :data:`SMALL_C`,
  spelled out with the clamped widths (each line's comment names the clamp; departures included).
- ``FORMS``: ``{("Name", "form"): lambda c: <count>}``, the count of each non-default form (``form=``, e.g. the
  official code's), without departures; it must hold at :data:`REFERENCE_C`, and at :data:`SMALL_C` wherever the
  form clamps nothing there (the official forms' exact widths never do).

A module's expected count at ``c`` is ``CLAMPED[name]`` at ``SMALL_C`` where given, else ``PAPER[name](c)`` plus its
departures. Every module shipped with the project (:data:`SHIPPED`) must have a ``PAPER`` line; a formula for a
module of your own is optional (the test matrix reports it as skipped).
"""

import importlib
import pkgutil

REFERENCE_C = 256  # r = 16, r = 32, 32 or 64 groups, C/4 splits, C/2 halves: all exact, nothing clamped
SMALL_C = 24  # below every default floor (8, 32) and most group counts: the clamps of the implementations apply

# The modules the project ships; each has a paper formula (deleting one fails the matrix).
SHIPPED = (
    "ACmix", "AgentAttention", "BAM", "BiLevelRoutingAttention", "BoTMHSA", "CAA", "CAFM", "CBAM", "CPCA",
    "CascadedGroupAttention", "CoT", "CoordAtt", "CrissCross", "DANet", "DAttention", "DeformableLKA",
    "DoubleAttention", "ECA", "ELA", "EMAttention", "EPSA", "EffectiveSE", "EfficientAdditiveAttention",
    "ExternalAttention", "FocusedLinearAttention", "GAM", "GCBlock", "GatherExcite", "HiLo", "LSKA", "LSKBlock", "MLCA",
    "MLLA", "MSCA", "MSDA", "MultiSEAM", "NAM", "NonLocal", "ParNetAttention", "PolarizedSA_P", "PolarizedSA_S",
    "ResidualAttention", "S2Attention", "SCSA", "SE", "SEAM", "SGE", "SK", "SOCA", "ShuffleAttention", "SimAM",
    "TripletAttention", "iRMB",
)

PAPER: dict = {}
DEPARTURES: dict = {}
CLAMPED: dict = {}
FORMS: dict = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _table, _mine in ((PAPER, _mod.PAPER), (DEPARTURES, getattr(_mod, "DEPARTURES", {})),
                          (CLAMPED, getattr(_mod, "CLAMPED", {})), (FORMS, getattr(_mod, "FORMS", {}))):
        _dup = set(_table) & set(_mine)
        assert not _dup, f"formulas defined twice: {_dup}"
        _table.update(_mine)
assert set(DEPARTURES) <= set(PAPER) and set(CLAMPED) <= set(PAPER), "departures/clamps of a module without a formula"
assert {n for n, _ in FORMS} <= set(PAPER), "a form's count for a module without a paper formula"


def expected_params(name: str, c: int, form: str | None = None) -> int:
    """The parameter count the formulas give for module ``name`` at ``c`` channels (in ``form``: a non-default form)."""
    if form is not None:
        return FORMS[(name, form)](c)
    if c == SMALL_C and name in CLAMPED:
        return CLAMPED[name]
    return PAPER[name](c) + sum(delta(c) for delta in DEPARTURES.get(name, {}).values())
