"""Small helpers shared by the attention families."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.registry.protocol import AttentionModule


def reduced_channels(c: int, reduction: float, min_channels: int) -> int:
    """The one hidden-width rule of a bottleneck: ``C // reduction``, never below ``min(min_channels, C)``.

    ``min_channels=1`` gives exactly ``C // reduction`` (never 0); each module's default floor is its documented one.
    """
    return max(int(c // reduction), min(int(min_channels), c))


def hidden_width(module: AttentionModule, c: int, reduction: float, min_channels: int,
                 what: str = "hidden width") -> int:
    """:func:`reduced_channels`, with a build note on ``module`` when the floor lifts ``C // reduction``."""
    return module.clamp(what, int(c // reduction), reduced_channels(c, reduction, min_channels),
                        f"{c}//{reduction:g} floored at min(min_channels={min_channels}, {c})")


def divisor_at_most(c: int, groups: int) -> int:
    """Largest divisor of ``c`` that is <= ``groups`` (so grouped layers never fail on odd widths)."""
    groups = max(1, min(int(groups), c))
    while c % groups:
        groups -= 1
    return groups


def eca_kernel_size(c: int, gamma: float = 2, b: float = 1) -> int:
    """ECA-Net's adaptive 1D kernel size: |log2(C)/gamma + b/gamma| rounded up to odd."""
    t = int(abs((math.log2(c) + b) / gamma))
    return t if t % 2 else t + 1


class BatchNorm2dSafe(nn.BatchNorm2d):
    """BatchNorm2d that falls back to running statistics when a batch has one value per channel.

    In train mode a plain BatchNorm raises "Expected more than 1 value per channel" when every channel holds a
    single value: a BatchNorm on a pooled (B, C, 1, 1) vector at batch 1, or on a 1x1 map at batch 1. Training
    meets batch 1 (a last partial batch of one image, batch-1 fine-tuning); the YOLO stride probe does not (it
    runs in eval mode, ``models/parse/probe.py``). Where a statistic cannot be computed this normalises with the running
    estimates instead (and does not update them); every other batch gets exactly ``nn.BatchNorm2d``'s maths, so an
    official BatchNorm2d/BatchNorm1d on a (B, C) vector, applied here to (B, C, 1, 1), keeps its values and its
    state-dict keys. Being a subclass, it is also left alone by ultralytics' ``initialize_weights`` (which matches
    ``nn.BatchNorm2d`` exactly), so a paper's or official code's eps/momentum survive inside a YOLO model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel() // x.shape[1] <= 1:
            return torch.nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


# --- forms: official code vs paper (``form=`` of the modules that offer several) ----------------------------------


def check_form(name: str, form: str, forms: tuple[str, ...]) -> str:
    """``form`` if it is one of ``forms``, else a ValueError naming the module and the forms it offers."""
    if form not in forms:
        raise ValueError(f"{name} form must be one of {', '.join(repr(f) for f in forms)}, got {form!r}")
    return form


def form_option(name: str, form: str, what: str, given, by_form: dict, free: tuple[str, ...] = ()):
    """The value of option ``what`` under ``form``: ``by_form[form]`` when not given (None).

    A value given explicitly must equal the form's own unless the form is one of ``free`` (forms that allow the
    option as an ablation); otherwise a ValueError says what the form fixes.
    """
    own = by_form[form]
    if given is None:
        return own
    if form not in free and given != own:
        raise ValueError(f"{name} form={form!r} fixes {what}={own!r}; got {what}={given!r}. "
                         f"Leave {what} out, or choose a form that allows it ({', '.join(map(repr, free)) or 'none'})")
    return given


def form_hidden_width(module: AttentionModule, name: str, c: int, reduction: float, min_channels: int | None,
                      form: str, floor: int, what: str = "hidden width", exact: tuple[str, ...] = ("official",)) -> int:
    """A reduced width by form.

    Forms in ``exact`` (the official code, ports) use exactly ``C // reduction``: 0 is an error (their code would
    build a 0-channel layer) and ``min_channels`` must be left out. Other forms use :func:`hidden_width` with
    ``min_channels`` (None: the module's default ``floor``).
    """
    if form not in exact:
        return hidden_width(module, c, reduction, floor if min_channels is None else min_channels, what)
    if min_channels is not None:
        raise ValueError(f"{name} form={form!r} uses its code's {what} C // reduction exactly; leave min_channels "
                         f"out (min_channels={min_channels} floors the width of the other forms only)")
    h = int(c // reduction)
    if h < 1:
        raise ValueError(f"{name} form={form!r}: {what} C // reduction = {c} // {reduction:g} = 0 (its code "
                         "would build a 0-channel layer); use a smaller reduction, or another form with "
                         "min_channels")
    return h


# --- helpers for the self-attention family (danet, criss_cross, cot, acmix, ...) ---------------------


def autocast_off(x: torch.Tensor):
    """Context manager that disables autocast on ``x``'s device type.

    Under autocast, ``a.float() @ b.float()`` is still run in bf16/fp16 (matmul is on autocast's
    low-precision list), so statistics that must stay in fp32 are computed inside this context.
    """
    return torch.autocast(device_type=x.device.type, enabled=False)


def local_neighbourhood(x: torch.Tensor, k: int, dilation: int = 1) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, k*k, H, W): the zero-padded k x k neighbourhood of every position.

    Offsets are ordered row-major (dy outer, dx inner), like ``nn.Unfold``. Built from k*k shifted
    slices of one zero-padded tensor: works for any H, W >= 1 (no reflection padding), exports to ONNX
    with dynamic H, W, and is deterministic on CUDA.
    """
    p = dilation * (k - 1) // 2
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    taps = [
        xp[..., i * dilation : i * dilation + h, j * dilation : j * dilation + w] for i in range(k) for j in range(k)
    ]
    return torch.stack(taps, 2)


def linspace_pm1(n: int, like: torch.Tensor) -> torch.Tensor:
    """``torch.linspace(-1, 1, n)`` in ``like``'s dtype/device, written with arange so that n == 1 gives
    [-1] also in ONNX (the exported Linspace divides by n - 1)."""
    i = torch.arange(n, device=like.device).to(like.dtype)
    return i * 2 / i.amax().clamp(min=1) - 1


# --- helpers for the hybrid family (shuffle_attention, gam, simam, sge, ...) ----------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (B, g*n, H, W) -> interleave the g groups of n channels."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def spatial_dof(x: torch.Tensor) -> torch.Tensor:
    """``max(H*W - 1, 1)`` of a (..., H, W) tensor as a 0-d tensor in ``x``'s dtype/device.

    The Bessel-corrected denominator of a per-map variance. Clamped so that a 1x1 map gives a zero
    variance instead of 0/0; built from the traced shape, so it stays dynamic in ONNX export.
    """
    n = x.shape[-2] * x.shape[-1] - 1
    return torch.scalar_tensor(n, dtype=x.dtype, device=x.device).clamp(min=1)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 if it is a lower-precision float (fp16/bf16); fp32/fp64 tensors are returned as they are."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class VANResidual(AttentionModule):
    """Base of LSKA and LSKBlock: ``x + proj_2(core(GELU(proj_1(x))))`` (VAN/LSKNet's attention sub-block).

    A subclass builds its core module, then calls :meth:`_wrap`; ``wrapped=False`` leaves the bare core. In the
    residual form, :meth:`init_identity` zeroes proj_2 so the block computes exactly x.
    """

    def _wrap(self, c1: int, wrapped: bool) -> None:
        self.wrapped = wrapped
        if wrapped:
            self.proj_1 = nn.Conv2d(c1, c1, 1)
            self.proj_2 = nn.Conv2d(c1, c1, 1)

    def _run(self, core: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self.wrapped:
            return core(x)
        return x + self.proj_2(core(torch.nn.functional.gelu(self.proj_1(x))))

    def init_identity(self) -> bool:
        """Zero proj_2 so the residual form computes exactly x (the bare module cannot)."""
        if not self.wrapped:
            return False
        nn.init.zeros_(self.proj_2.weight)
        nn.init.zeros_(self.proj_2.bias)
        return True


class GroupedSpatialGate(AttentionModule):
    """Base of SGE and EMAttention: the channels split into ``self.groups`` groups, each scaled by its own
    spatial gate. A subclass defines :meth:`_grouped_gate`; forward and the heatmap maps follow from it."""

    groups: int

    def _grouped_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x as (B*G, C/G, H, W), its per-group gate (B*G, 1, H, W))."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, gate = self._grouped_gate(x)
        return (g * gate).reshape(x.shape)

    def attention_maps(self, x: torch.Tensor) -> dict:
        """The spatial gate, averaged over the groups (B, H, W)."""
        b, _, h, w = x.shape
        return {"spatial": self._grouped_gate(x)[1].reshape(b, self.groups, h, w).mean(1),
                "spatial_how": "spatial gate, mean over groups"}
