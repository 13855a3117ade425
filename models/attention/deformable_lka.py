"""D-LKA: deformable large kernel attention.

Azad, Niggemeier, Hüttemann, Kazerouni, Khodapanah Aghdam, Velichko, Bagci, Merhof, "Beyond Self-Attention:
Deformable Large Kernel Attention for Medical Image Segmentation", WACV 2024, arXiv:2309.00121.
Official code: xmindflow/deformableLKA (``2D/deformable_LKA/deformable_LKA.py``, ``deformable_LKA_Attention``).

VAN's large kernel attention with both depthwise convs made deformable (DCNv1, one offset group):

    attn = 1x1( DDW 7x7 dil 3( DDW 5x5(u) ) ),  y = u * attn        (the bare D-LKA, an unbounded gate)

where DDW k x k is a depthwise deformable conv whose (dy, dx) per tap and pixel come from a full k x k conv of its
input (C -> 2 k^2 channels, same padding and dilation, with bias): tap (i, j) of output pixel p samples the input
bilinearly (zero outside) at p - pad + (i, j) * dil + offset. As in VAN and the official ``deformable_LKA_Attention``
the module sits inside ``x + proj_2(D-LKA(GELU(proj_1(x))))`` (1x1 convs); ``wrapped=False`` gives the bare D-LKA.

Departures from the official code:
- The deformable depthwise conv is this project's own: bilinear samples gathered per tap with positions in
  (at least) fp32, and a hand-written backward that recomputes the samples (nothing per tap is stored). Same values
  as ``torchvision.ops.deform_conv2d`` (offsets and gradients included, 1e-14 in float64), but: deterministic on
  CUDA under ``torch.use_deterministic_algorithms`` (the gradient scatter is ``scatter_add_``, deterministic there;
  torchvision's CUDA backward accumulates with atomicAdd and does not alert, so its results vary run to run),
  runs in fp16/bf16 on CPU, exports to ONNX with dynamic H, W as plain gathers (the TorchScript exporter that
  ``export.py`` and the tests use has no rule for ``torchvision::deform_conv2d`` at any opset in torch 2.14 /
  torchvision 0.29; ONNX's own ``DeformConv`` needs opset 19), and on CPU trains faster than torchvision's kernel.
- The 3D variant and the "experimental" offset network of the official file are not offered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import VANResidual, at_least_fp32
from models.registry import register_attention

# (kernel, padding, dilation) of the two deformable depthwise convs: a 5x5, then a 7x7 with dilation 3 (VAN's 21x21)
DLKA_CONVS = ((5, 2, 1), (7, 9, 3))


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _sample_points(x: torch.Tensor, offset: torch.Tensor, k: int, pad: int, dil: int):
    """Bilinear corners of every tap: flat indices into the map padded by (1, 2) rows/columns (B, k*k, 4, N), the
    fractional parts fy, fx (B, k*k, N) in x's dtype, and the positions py, px (B, k*k, N) in at least fp32, clamped
    to [-1, H] x [-1, W] (where every corner reads padding, the sample is 0, as torchvision's zero outside)."""
    b, _, h, w = x.shape
    o = at_least_fp32(offset).reshape(b, k * k, 2, h, w)
    ys = torch.arange(h, device=x.device).to(o.dtype)
    xs = torch.arange(w, device=x.device).to(o.dtype)
    h_max, w_max = ys.amax() + 1, xs.amax() + 1  # H, W as tensors (dynamic in ONNX)
    taps = torch.arange(k, device=x.device).to(o.dtype) * dil - pad
    py = o[:, :, 0] + ys.view(1, 1, h, 1) + taps.repeat_interleave(k).view(1, k * k, 1, 1)
    px = o[:, :, 1] + xs.view(1, 1, 1, w) + taps.repeat(k).view(1, k * k, 1, 1)
    py = torch.minimum(py.clamp(min=-1), h_max).flatten(2)
    px = torch.minimum(px.clamp(min=-1), w_max).flatten(2)
    # a NaN position (NaN offsets: a diverged model, or an uninitialised probe image) reads padding instead of an
    # index out of range; its fractions stay NaN, so the output is NaN as in any other layer (py == py: not NaN)
    y0 = torch.where(py == py, py, -1.0).floor()
    x0 = torch.where(px == px, px, -1.0).floor()
    wp = w_max + 3  # width of the padded map
    i00 = ((y0 + 1) * wp + (x0 + 1)).long()
    idx = torch.stack((i00, i00 + 1, i00 + wp.long(), i00 + wp.long() + 1), 2)
    return idx, (py - y0).to(x.dtype), (px - x0).to(x.dtype), py, px


def _taps(xp: torch.Tensor, idx: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor, t: int):
    """The four corners of tap t gathered from the flat padded map xp (B, C, Np), and its weights (B, 1, N)."""
    c = xp.shape[1]
    corners = [xp.gather(2, idx[:, t, j].unsqueeze(1).expand(-1, c, -1)) for j in range(4)]
    return corners, fy[:, t].unsqueeze(1), fx[:, t].unsqueeze(1)


def deform_depthwise(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, k: int, pad: int,
                     dil: int) -> torch.Tensor:
    """Depthwise deformable conv (stride 1, one offset group, no bias) in plain differentiable ops:
    ``torchvision.ops.deform_conv2d(x, offset, weight, padding=pad, dilation=dil)`` for a (C, 1, k, k) weight."""
    b, c, h, w = x.shape
    xp = F.pad(x, (1, 2, 1, 2)).flatten(2)
    idx, fy, fx, _, _ = _sample_points(x, offset, k, pad, dil)
    w2 = weight.reshape(c, k * k).to(x.dtype)
    out = None
    for t in range(k * k):
        (v00, v01, v10, v11), a, bx = _taps(xp, idx, fy, fx, t)
        term = torch.lerp(torch.lerp(v00, v01, bx), torch.lerp(v10, v11, bx), a) * w2[:, t].view(1, c, 1)
        out = term if out is None else out + term
    return out.reshape(b, c, h, w)


class _DeformDepthwise(torch.autograd.Function):
    """:func:`deform_depthwise` with a backward that recomputes the samples tap by tap instead of storing them."""

    @staticmethod
    def forward(ctx, x, offset, weight, k, pad, dil):
        ctx.save_for_backward(x, offset, weight)
        ctx.conv = (k, pad, dil)
        return deform_depthwise(x, offset, weight, k, pad, dil)

    @staticmethod
    def backward(ctx, grad_out):
        x, offset, weight = ctx.saved_tensors
        k, pad, dil = ctx.conv
        b, c, h, w = x.shape
        xp = F.pad(x, (1, 2, 1, 2)).flatten(2)
        idx, fy, fx, py, px = _sample_points(x, offset, k, pad, dil)
        # the clamp's gradient: zero where a position left [-1, H] x [-1, W] (torchvision: zero outside (-1, H))
        inside_y = ((py > -1) & (py < h)).to(x.dtype)
        inside_x = ((px > -1) & (px < w)).to(x.dtype)
        w2 = weight.reshape(c, k * k).to(x.dtype)
        g = grad_out.reshape(b, c, h * w).to(x.dtype)
        grad_xp = torch.zeros_like(xp)
        grad_w = torch.empty(c, k * k, dtype=x.dtype, device=x.device)
        grad_off = torch.empty(b, k * k, 2, h * w, dtype=x.dtype, device=x.device)
        for t in range(k * k):
            (v00, v01, v10, v11), a, bx = _taps(xp, idx, fy, fx, t)
            top, bottom = torch.lerp(v00, v01, bx), torch.lerp(v10, v11, bx)
            grad_w[:, t] = (g * torch.lerp(top, bottom, a)).sum((0, 2))
            gt = g * w2[:, t].view(1, c, 1)
            grad_off[:, t, 0] = (gt * (bottom - top)).sum(1) * inside_y[:, t]
            grad_off[:, t, 1] = (gt * torch.lerp(v01 - v00, v11 - v10, a)).sum(1) * inside_x[:, t]
            g_bottom = gt * a
            g_top = gt - g_bottom
            for j, part in enumerate((g_top - g_top * bx, g_top * bx, g_bottom - g_bottom * bx, g_bottom * bx)):
                grad_xp.scatter_add_(2, idx[:, t, j].unsqueeze(1).expand(-1, c, -1), part)
        grad_x = grad_xp.reshape(b, c, h + 3, w + 3)[:, :, 1:h + 1, 1:w + 1]
        return (grad_x, grad_off.reshape(offset.shape).to(offset.dtype), grad_w.reshape(weight.shape).to(weight.dtype),
                None, None, None)


class DeformableDepthwiseConv(nn.Module):
    """Offsets from a k x k conv of the input (C -> 2 k^2, bias), then a depthwise deformable k x k conv (no bias)."""

    def __init__(self, c1: int, kernel_size: int, padding: int, dilation: int = 1):
        super().__init__()
        self.k, self.pad, self.dil = kernel_size, padding, dilation
        self.offset_net = nn.Conv2d(c1, 2 * kernel_size**2, kernel_size, padding=padding, dilation=dilation)
        self.weight = nn.Parameter(torch.empty(c1, 1, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's (and torchvision DeformConv2d's) init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_net(x)
        if _exporting():
            return deform_depthwise(x, offset, self.weight, self.k, self.pad, self.dil)
        return _DeformDepthwise.apply(x, offset, self.weight, self.k, self.pad, self.dil)


class DeformableLKACore(nn.Module):
    """The bare D-LKA: u * 1x1(DDW 7x7 dil 3(DDW 5x5(u)))."""

    def __init__(self, c1: int):
        super().__init__()
        (k0, p0, d0), (k1, p1, d1) = DLKA_CONVS
        self.conv0 = DeformableDepthwiseConv(c1, k0, p0, d0)
        self.conv_spatial = DeformableDepthwiseConv(c1, k1, p1, d1)
        self.conv1 = nn.Conv2d(c1, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


@register_attention(
    "DeformableLKA",
    category="spatial",
    paper="Beyond Self-Attention: Deformable Large Kernel Attention for Medical Image Segmentation",
    arxiv="2309.00121",
    year=2024,
    placement="backbone_end",
    notes="ODS/blog ports paste the official torchvision.ops.DeformConv2d version (atomicAdd CUDA backward: "
    "nondeterministic, no alert; no ONNX export through the TorchScript exporter); here the same maths as gathers "
    "with a recomputing backward: deterministic, dynamic-H/W ONNX, fp16/bf16, faster on CPU.",
)
class DeformableLKA(VANResidual):
    """D-LKA, by default in the residual form x + proj_2(D-LKA(GELU(proj_1(x)))) of deformable_LKA_Attention."""

    def __init__(self, c1: int, wrapped: bool = True):
        super().__init__()
        self.dlka = DeformableLKACore(c1)
        self._wrap(c1, wrapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.dlka, x)

    def extra_repr(self) -> str:
        return f"wrapped={self.wrapped}"
