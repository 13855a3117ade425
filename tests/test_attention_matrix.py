"""One test matrix for every registered attention module.

A module is covered by registering it: every test here is parametrised over the registry, so adding a
module to ``models/attention/`` is all it takes. A module that offers several forms (``forms=`` in its
registration: official code, paper, named variants) runs the behaviour tests in every form (ids ``Name-form`` for the
non-default ones). A parameter formula in ``tests/formulas/`` is required for the modules the project ships and
optional for a module of your own (reported as skipped without one).
"""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest
import torch

from models.registry import attention_specs
from models.registry.protocol import AttentionModule
from models.registry import attention_arguments
from tests.formulas import CLAMPED, FORMS, PAPER, REFERENCE_C, SHIPPED, SMALL_C, expected_params

SPECS = attention_specs()
NAMES = [s.name for s in SPECS]
BY_NAME = {s.name: s for s in SPECS}


def default_form(name: str) -> str | None:
    spec = BY_NAME[name]
    return inspect.signature(spec.cls).parameters["form"].default if spec.forms else None


# (name, form): every module in its default form (form None: built with no form argument), then its other forms
CASES = [(s.name, None) for s in SPECS] + [(s.name, f) for s in SPECS for f in s.forms if f != default_form(s.name)]
CASE_IDS = [n if f is None else f"{n}-{f}" for n, f in CASES]

# (B, C, H, W): batch 1 in train mode, tiny, odd and non-square maps; C multiple of 8 but not of 16/64
SHAPES = [(1, 24, 1, 1), (2, 40, 3, 3), (1, 72, 20, 12), (2, 24, 13, 31)]


def build(name: str, c: int, seed: int = 0, form: str | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BY_NAME[name].cls(c) if form is None else BY_NAME[name].cls(c, form=form)


def randomise_zero_init(m: torch.nn.Module) -> None:
    """Perturb parameters so identity-at-init modules exercise their attention path in comparisons."""
    with torch.no_grad():
        for p in m.parameters():
            if p.dtype.is_floating_point and torch.count_nonzero(p) == 0:
                p.add_(0.1 * torch.randn_like(p))


def test_registry_has_modules():
    assert len(NAMES) >= 4, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_docstring_cites_paper(name):
    spec = BY_NAME[name]
    doc = inspect.getmodule(spec.cls).__doc__ or ""
    assert spec.paper and spec.year, f"{name}: register it with paper= and year="
    assert spec.arxiv in doc or spec.paper.split(":")[0] in doc, f"{name}: module docstring must cite the paper"
    assert "depart" in doc.lower(), f"{name}: module docstring must say where it departs from the paper"


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shape_preserved_train_and_eval(name, form, shape):
    m = build(name, shape[1], form=form)
    x = torch.randn(shape)
    m.train()
    assert m(x).shape == x.shape
    m.eval()
    with torch.no_grad():
        assert m(x).shape == x.shape


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("kind", ["random", "zeros"])
def test_forward_backward_finite(name, form, kind):
    m = build(name, 40, form=form).train()
    randomise_zero_init(m)
    x = (torch.randn if kind == "random" else torch.zeros)(2, 40, 10, 14, requires_grad=True)
    y = m(x)
    assert torch.isfinite(y).all(), f"{name}: non-finite output on {kind} input"
    (y.float() ** 2).mean().backward()
    assert torch.isfinite(x.grad).all(), f"{name}: non-finite input gradient on {kind} input"
    for n, p in m.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}.{n}: non-finite gradient on {kind} input"


def _skip_if_no_cpu_kernel(err: RuntimeError, dtype: str):
    msg = str(err)
    if "not implemented for" in msg and ("Half" in msg or "BFloat16" in msg):
        pytest.skip(f"torch lacks a CPU {dtype} kernel: {msg.splitlines()[0]}")
    raise err


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_half_forward_finite(name, form):
    """``val.py --half`` runs the whole model in fp16 with no autocast; activations of ~10 must not overflow."""
    m = build(name, 40, form=form).eval()
    randomise_zero_init(m)
    m.half()
    x = (10 * torch.randn(2, 40, 20, 20)).half()
    try:
        with torch.no_grad():
            y = m(x)
    except RuntimeError as e:
        _skip_if_no_cpu_kernel(e, "fp16")
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all(), f"{name}: fp16 forward overflowed"


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_bf16_autocast_forward_backward(name, form):
    m = build(name, 40, form=form).train()
    randomise_zero_init(m)
    x = torch.randn(2, 40, 12, 20, requires_grad=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        y.float().square().mean().backward()
    except RuntimeError as e:
        _skip_if_no_cpu_kernel(e, "bf16")
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad).all()


def _forward_backward(name: str, x: torch.Tensor, form: str | None = None):
    """Output, input gradient and parameter gradients of a freshly built (seeded) module in train mode."""
    m = build(name, x.shape[1], form=form).train()
    randomise_zero_init(m)  # seeded by build: the same perturbation every time
    x = x.clone().requires_grad_(True)
    y = m(x)
    y.square().mean().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_deterministic_mode(name, form):
    """Under ``torch.use_deterministic_algorithms(True)`` (YOLOv5's ``--deterministic``) forward and backward run
    without raising, and two seeded builds on the same input give bit-identical outputs and gradients."""
    x = torch.randn(2, 40, 12, 20, generator=torch.Generator().manual_seed(3))
    torch.use_deterministic_algorithms(True)
    try:
        y1, gx1, gp1 = _forward_backward(name, x, form)
        y2, gx2, gp2 = _forward_backward(name, x, form)
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(y1, y2), f"{name}: outputs differ between two identical runs"
    assert torch.equal(gx1, gx2), f"{name}: input gradients differ between two identical runs"
    assert gp1.keys() == gp2.keys(), name
    for n in gp1:
        assert torch.equal(gp1[n], gp2[n]), f"{name}.{n}: parameter gradients differ between two identical runs"


def test_every_shipped_module_is_registered_and_has_a_paper_formula():
    assert sorted(SHIPPED) == sorted(set(SHIPPED)) and len(SHIPPED) >= 53
    missing = [n for n in SHIPPED if n not in BY_NAME]
    assert not missing, f"shipped modules no longer registered: {missing}"
    no_formula = [n for n in SHIPPED if n not in PAPER]
    assert not no_formula, f"shipped modules without a paper formula in tests/formulas/: {no_formula}"


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_paper_formula(name):
    """The paper's count at REFERENCE_C (nothing clamped there), and at SMALL_C the count with each clamp named."""
    if name not in PAPER:
        assert name not in SHIPPED, f"{name}: add its paper formula to tests/formulas/"
        pytest.skip(f"{name}: no paper formula in tests/formulas/ (optional for your own modules)")
    for c in (REFERENCE_C, SMALL_C):
        m = build(name, c)
        got = sum(p.numel() for p in m.parameters())
        want = expected_params(name, c)
        assert got == want, f"{name}: {got} params at C={c}, the formulas say {want}"
        if c == REFERENCE_C:
            assert not m.build_notes, f"{name}: clamps at the reference width C={c}: {m.build_notes}"
        elif m.build_notes:
            assert name in CLAMPED, f"{name} clamps at C={c} ({m.build_notes}): spell it out in CLAMPED"


OTHER_FORMS = [(n, f) for n, f in CASES if f is not None]


@pytest.mark.parametrize("name, form", OTHER_FORMS, ids=[f"{n}-{f}" for n, f in OTHER_FORMS])
def test_param_count_of_each_form(name, form):
    """Each non-default form's count (tests/formulas FORMS) at REFERENCE_C, and at SMALL_C where it clamps nothing."""
    if name not in SHIPPED:
        pytest.skip(f"{name}: not shipped; form formulas are optional")
    assert (name, form) in FORMS, f"{name}: add the count of form={form!r} to FORMS in tests/formulas/"
    for c in (REFERENCE_C, SMALL_C):
        m = build(name, c, form=form)
        if c == SMALL_C and m.build_notes:
            continue
        got = sum(p.numel() for p in m.parameters())
        assert got == expected_params(name, c, form), f"{name} form={form!r}: {got} params at C={c}"
        assert not m.build_notes, f"{name} form={form!r} clamps at C={c}: {m.build_notes}"


RENAMED = [(s.name, old, new) for s in SPECS for old, new in s.renamed.items()]
# a valid non-default value per current name (at C=32), so the old name visibly carries it
RENAMED_VALUES = {"num_heads": 2, "kernel_size": 5, "groups": 2, "reduction": 8, "embed_reduction": 4,
                  "min_channels": 16, ("LSKA", "kernel_size"): 11}


def _structure(m: torch.nn.Module):
    """State-dict shapes and plain attributes (head counts, kernel sizes ...) of a built module."""
    plain = {k: v for k, v in vars(m).items() if isinstance(v, (bool, int, float, str, tuple))}
    return [(k, tuple(v.shape)) for k, v in m.state_dict().items()], plain


@pytest.mark.parametrize("name, old, new", RENAMED, ids=[f"{n}-{o}" for n, o, _ in RENAMED])
def test_old_hyperparameter_names_still_build_from_a_yaml_row(name, old, new):
    """A YAML row that writes an old name builds the module the current name builds, with a note saying so."""
    spec = BY_NAME[name]
    value = RENAMED_VALUES.get((name, new), RENAMED_VALUES.get(new))
    assert value is not None, f"add a test value for {name}'s {new!r} to RENAMED_VALUES"
    notes: list[str] = []
    args, kwargs = attention_arguments(spec, [{old: value}], 32, "test.yaml: layer 3", notes=notes)
    assert args == [] and kwargs == {new: value} and notes == [f"'{old}' is the old name of '{new}'"]
    via_old, via_new = spec.cls(32, *args, **kwargs), spec.cls(32, **{new: value})
    assert _structure(via_old) == _structure(via_new)
    assert _structure(via_old) != _structure(spec.cls(32)), f"{name}: {new}={value!r} changed nothing"


def test_decided_renames():
    """The hyperparameter names users type: one spelling per meaning, the old ones kept as aliases."""
    renamed = {s.name: dict(s.renamed) for s in SPECS}
    decided = {
        "ACmix": {"head": "num_heads"}, "BoTMHSA": {"heads": "num_heads"},
        "DAttention": {"n_heads": "num_heads", "n_groups": "groups", "ksize": "kernel_size"},
        "EMAttention": {"factor": "groups"}, "GAM": {"rate": "reduction"}, "LSKA": {"k_size": "kernel_size"},
        "CoT": {"factor": "embed_reduction"}, "SK": {"min_dim": "min_channels"},
    }
    for name, pairs in decided.items():
        assert pairs.items() <= renamed[name].items(), (name, renamed[name])
    for name, pairs in renamed.items():
        assert not {"ratio", "r"} & set(pairs), f"{name}: 'ratio'/'r' are ambiguous and never aliases"
        params = list(inspect.signature(BY_NAME[name].cls).parameters)
        assert not set(pairs) & set(params), f"{name}: an alias that is also a current parameter name"
    for spec in (s for s in SPECS if s.name in SHIPPED):  # uniform names: num_heads, kernel_size, ...
        params = set(list(inspect.signature(spec.cls).parameters)[1:])
        assert not params & {"heads", "head", "n_heads", "k_size", "ksize", "min_dim", "rate", "n_groups"}, spec.name


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_subclasses_the_protocol_and_keeps_it(name, form):
    """What heatmaps, transfer, the docs and the dense-memory check rely on."""
    m = build(name, 40, form=form)
    assert isinstance(m, AttentionModule) and isinstance(m.build_notes, list)
    assert all(isinstance(n, str) for n in m.build_notes), m.build_notes
    if name in SHIPPED:  # every note of ours comes from self.clamp
        assert all(" -> " in n for n in m.build_notes), m.build_notes
    x = torch.rand(1, 40, 5, 7)
    with torch.no_grad():
        maps = m.attention_maps(x)
    assert set(maps) <= {"spatial", "channel", "spatial_how", "channel_how"}, maps.keys()
    if "spatial" in maps:
        assert maps["spatial"].shape == (1, 5, 7)
    if "channel" in maps:
        assert maps["channel"].shape == (1, 40)
    assert isinstance(m.init_identity(), bool)
    assert m.attention_map_elements(5, 7) > 0


@pytest.mark.parametrize("name, form", CASES, ids=CASE_IDS)
def test_onnx_export_matches_torch(name, form):
    """Exports (dynamic H, W unless the registry marks the module static) and runs in onnxruntime.

    Tolerance: max abs diff <= 1e-4 + 1e-4 * max|y| (fp32).
    """
    ort = pytest.importorskip("onnxruntime")
    spec = BY_NAME[name]
    m = build(name, 32, form=form).eval()
    randomise_zero_init(m)
    x = torch.randn(1, 32, 16, 16)
    f = io.BytesIO()
    dynamic = {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}} if spec.onnx_dynamic else None
    torch.onnx.export(m, (x,), f, input_names=["x"], output_names=["y"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    sizes = [(16, 16), (20, 12), (13, 31)] if spec.onnx_dynamic else [(16, 16)]
    for h, w in sizes:
        xi = torch.randn(1, 32, h, w)
        with torch.no_grad():
            ref = m(xi).numpy()
        out = sess.run(None, {"x": xi.numpy()})[0]
        tol = 1e-4 + 1e-4 * float(np.abs(ref).max())
        assert np.abs(out - ref).max() <= tol, f"{name} at {h}x{w}: onnx differs by {np.abs(out - ref).max():.2e}"


# The floor of each module's reduced hidden width (``min_channels``) in its default form, as it was before the one
# rule: changing a default changes parameter counts of existing configs. Modules with an official form whose width is
# exactly C // r write ``min_channels=None`` (the default form's floor, or none in the official form).
MIN_CHANNELS = {"SE": 8, "CBAM": 8, "BAM": 8, "GCBlock": 8, "SOCA": 8, "GatherExcite": 8, "CPCA": 8,
                "DoubleAttention": 8, "CoordAtt": 8, "SK": 32, "CoT": 32, "GAM": 1, "EPSA": 1, "CrissCross": 1,
                "DANet": 1, "NonLocal": 1, "SEAM": 1, "MultiSEAM": 1}
# min_channels=None: the form decides
FORM_FLOOR = {"SE", "CBAM", "BAM", "GCBlock", "SOCA", "GatherExcite", "CoordAtt"}


def test_one_hidden_width_rule():
    from models.attention._common import reduced_channels

    assert reduced_channels(256, 16, 8) == 16
    assert reduced_channels(24, 16, 8) == 8  # floored
    assert reduced_channels(4, 16, 8) == 4  # never wider than C
    assert reduced_channels(40, 16, 1) == 2  # min_channels=1: exactly C // r
    assert reduced_channels(8, 16, 1) == 1  # ... never 0
    shipped = [s for s in SPECS if s.name in SHIPPED]
    with_floor = {s.name for s in shipped if "min_channels" in inspect.signature(s.cls).parameters}
    with_reduction = {s.name for s in shipped if "reduction" in inspect.signature(s.cls).parameters}
    assert with_reduction <= with_floor, f"a reduction without a min_channels: {with_reduction - with_floor}"
    assert with_floor == set(MIN_CHANNELS)
    for name, floor in MIN_CHANNELS.items():
        default = inspect.signature(BY_NAME[name].cls).parameters["min_channels"].default
        assert default == (None if name in FORM_FLOOR else floor), name
        if name in FORM_FLOOR:  # the default form's floor, seen in a build note where it lifts C // r
            assert any(f"floored at min(min_channels={floor}, 24)" in n for n in BY_NAME[name].cls(24).build_notes)


@pytest.mark.parametrize("name", sorted(set(MIN_CHANNELS) - {"SK", "CoT", "EPSA"}))  # those: the paper's L / groups
def test_min_channels_one_makes_the_reduction_exact(name):
    """At C=40 (C // 16 = 2, C // 32 = 1) with min_channels=1 the paper's formula holds as printed, nothing noted;
    at C=24 the default floor (8) lifts the width and says so."""
    m = BY_NAME[name].cls(40, min_channels=1)
    assert sum(p.numel() for p in m.parameters()) == expected_params(name, 40) and m.build_notes == []
    if MIN_CHANNELS[name] > 1:
        assert any("floored at min(min_channels=8, 24)" in n for n in BY_NAME[name].cls(24).build_notes), name


@pytest.mark.parametrize("name", sorted(FORM_FLOOR - {"GatherExcite", "CoordAtt"}))  # CoordAtt: official max(8, C/r)
def test_official_width_is_exact_and_zero_is_an_error(name):
    """form='official': exactly C // r (C=24, r=16: 1, no floor, no note); C // r = 0 names the module and the
    numbers; min_channels is refused (it floors the other forms only). Through a YAML row the error names the layer."""
    cls = BY_NAME[name].cls
    m = cls(24, form="official")
    assert m.build_notes == [] and sum(p.numel() for p in m.parameters()) == expected_params(name, 24, "official")
    with pytest.raises(ValueError, match=rf"{name} form='official'.*C // reduction = 8 // 16 = 0"):
        cls(8, form="official")
    with pytest.raises(ValueError, match="leave min_channels out"):
        cls(24, form="official", min_channels=8)


def test_forms_from_a_yaml_row_and_the_official_width_error_names_the_layer():
    from models.parse.build import parse_model
    from models.registry import ConfigError

    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "BAM", [64, {"form": "official"}]]], "head": []}
    layers, _ = parse_model(d, 3, verbose=False)
    assert layers[1].form == "official" and layers[1].fc1_bn is not None and layers[1].fc1.out_channels == 4
    d["backbone"] = [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "SE", [8, {"form": "official"}]]]
    with pytest.raises(ConfigError, match=r"layer 1.*SE.*8 // 16 = 0"):
        parse_model(d, 3, verbose=False)
    d["backbone"][1] = [-1, 1, "SE", [8, {"form": "oficial"}]]
    with pytest.raises(ConfigError, match=r"layer 1.*SE form must be one of 'paper', 'official'"):
        parse_model(d, 3, verbose=False)


@pytest.mark.usefixtures("one_thread")  # ~40 small models: one thread, or minutes of spin-waiting on a loaded CPU
def test_module_docs_are_up_to_date():
    """docs/modules.md is generated from the registry; a changed module, default or old name must regenerate it."""
    from tools import gen_docs

    assert gen_docs.main(["--check"]) == 0, "docs/modules.md is out of date: run python tools/gen_docs.py"
