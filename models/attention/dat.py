"""DAT: deformable multi-head attention (the attention sub-layer of a DAT block).

Xia, Pan, Song, Li, Huang, "Vision Transformer with Deformable Attention", CVPR 2022, arXiv:2201.00520.
Official code: LeapLabTHU/DAT (``models/dat_blocks.py``, ``DAttentionBaseline``).

q = 1x1 conv of LN(x). Per channel group an offset network (depthwise k x k conv, stride r -> LayerNorm -> GELU ->
bias-free 1x1 conv to 2) moves each point of an Hk x Wk reference grid by tanh(.) s / (Hk - 1) in [-1, 1] units
(s = offset_range_factor); bilinear samples there (zero outside, align-corners) give Ns = Hk Wk keys and values (1x1
convs). Multi-head attention of the N = H*W queries against them (scale head_dim^-0.5), plus "dwc_pe" (a 3x3
depthwise conv of q), then a 1x1 projection: y = x + DAttn(LayerNorm(x)).

Forms (``form=``), the same parameters:

- ``paper`` (default): reference points on the key grid (0, 0) ... (Hk - 1, Wk - 1) normalised to [-1, 1]: the centres
  of the offset conv's windows (pixel i r for odd k).
- ``official``: the released points ``linspace(0.5, Hk - 0.5, Hk) / (Hk - 1)``, i.e. pixel (i + 0.5)(H - 1)/(Hk - 1):
  half a pixel off the grid at stride 1, the last keys half outside the map (golden test ``DAttention``).

Departures from the paper:
- Position encoding: the official ``dwc_pe`` option (the ODS default), not the deformable relative bias, whose
  (2H - 1) x (2W - 1) table is tied to one feature size.
- Bilinear sampling by ``torch.gather`` over four neighbours (positions and weights in fp32), not ``F.grid_sample``:
  the same values, deterministic on CUDA, dynamic in ONNX.
- Odd offset kernels only (padding k // 2: any H, W >= 1; the official pad-0 case k == stride fails on maps under k).
  A 1-pixel key grid gets offset range 0 along that axis, where the official code divides by zero.
- The block's pre-norm and residual are part of the module (its MLP is not); ``init_identity()`` zeroes the output
  projection. Heads and groups clamp to divisors; softmax in fp32. ``n_heads``, ``n_groups``, ``ksize`` are accepted
  old names of ``num_heads``, ``groups``, ``kernel_size``.
- Attention through ``scaled_dot_product_attention``: no (heads, N, Ns) map is stored. Compute stays quadratic at
  stride 1: P5 by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, check_form, divisor_at_most
from models.attention._sdpa import fused_attention
from models.registry.protocol import AttentionModule
from models.registry import register_attention


FORMS = ("paper", "official")


def bilinear_gather(feat: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample (B, C, H, W) at (fp32) pixel positions py, px of shape (B, *S); zero outside. Returns (B, C, prod(S))."""
    b, c, h, w = feat.shape
    ys = torch.arange(h, device=feat.device).to(py.dtype)
    xs = torch.arange(w, device=feat.device).to(py.dtype)
    h_max, w_max = ys.amax(), xs.amax()  # H - 1, W - 1 (tensors, so the ONNX graph stays dynamic)
    py, px = py.flatten(1), px.flatten(1)
    y0, x0 = py.floor(), px.floor()
    fy, fx = py - y0, px - x0
    flat = feat.reshape(b, c, -1)
    n_max = ((h_max + 1) * (w_max + 1) - 1).long()  # last flat index
    out = None
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy <= h_max) & (xx >= 0) & (xx <= w_max)
            idx = (torch.minimum(yy.clamp(min=0), h_max) * (w_max + 1) + torch.minimum(xx.clamp(min=0), w_max)).long()
            # a NaN position (non-finite input) converts to an arbitrary integer: keep the gather in range, the
            # NaN weight below still makes that output NaN instead of raising an index error
            idx = torch.minimum(idx.clamp(min=0), n_max)
            val = flat.gather(2, idx.unsqueeze(1).expand(-1, c, -1))
            term = val * (wy * wx * inside).unsqueeze(1).to(val.dtype)
            out = term if out is None else out + term
    return out


@register_attention(
    "DAttention",
    category="self-attention",
    paper="Vision Transformer with Deformable Attention",
    arxiv="2201.00520",
    year=2022,
    placement="p5",
    dense=True,
    notes="ODS/official use F.grid_sample (raises under CUDA deterministic mode), build the offset range in "
    "float32 (dtype promotion under .half()) and divide by Hk-1 (inf on 1-pixel maps); fixed_pe/rpe tables "
    "need a fixed size. Here: gather-based sampling, dwc_pe, pre-norm residual; form=official: the code's "
    "half-pixel reference points. SDPA: no N x Ns map.",
    renamed={"n_heads": "num_heads", "heads": "num_heads", "head": "num_heads", "n_groups": "groups",
             "ksize": "kernel_size", "k_size": "kernel_size"},
    forms=FORMS,
)
class DAttention(AttentionModule):
    """x + DeformableAttention(LN(x)): 8 heads, 4 offset groups, stride 1, offset range 4, 3x3 offset conv."""

    def __init__(self, c1: int, num_heads: int = 8, groups: int = 4, stride: int = 1,
                 offset_range_factor: float = 4.0, kernel_size: int = 3, form: str = "paper"):
        super().__init__()
        check_form("DAttention", form, FORMS)
        self.form = form
        if kernel_size % 2 == 0 or stride < 1:
            raise ValueError(f"DAttention needs an odd kernel_size and stride >= 1, got kernel_size={kernel_size}, "
                             f"stride={stride}")
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.groups = self.clamp("offset groups", groups, divisor_at_most(self.heads, groups), f"heads={self.heads}")
        self.hc = c1 // self.heads
        self.cg = c1 // self.groups
        self.stride, self.ksize = int(stride), int(kernel_size)
        self.pad = kernel_size // 2
        self.factor = float(offset_range_factor)
        self.norm = nn.LayerNorm(c1)
        self.proj_q = nn.Conv2d(c1, c1, 1)
        self.proj_k = nn.Conv2d(c1, c1, 1)
        self.proj_v = nn.Conv2d(c1, c1, 1)
        self.proj_out = nn.Conv2d(c1, c1, 1)
        self.off_dw = nn.Conv2d(self.cg, self.cg, kernel_size, stride, self.pad, groups=self.cg)
        self.off_norm = nn.LayerNorm(self.cg)
        self.off_pw = nn.Conv2d(self.cg, 2, 1, bias=False)
        self.rpe = nn.Conv2d(c1, c1, 3, padding=1, groups=c1)

    def _key_grid(self, n: int) -> int:
        return (n + 2 * self.pad - self.ksize) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g, m, hc = self.groups, self.heads, self.hc
        t = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        q = self.proj_q(t)
        off = self.off_dw(q.reshape(b * g, self.cg, h, w))
        off = at_least_fp32(self.off_pw(F.gelu(self.off_norm(off.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))))
        hk, wk = off.shape[-2:]
        iy = torch.arange(hk, device=x.device).to(off.dtype)  # positions in fp32 (fp64 for fp64 input)
        ix = torch.arange(wk, device=x.device).to(off.dtype)
        h_max = torch.arange(h, device=x.device).to(off.dtype).amax()  # H - 1
        w_max = torch.arange(w, device=x.device).to(off.dtype).amax()
        # offset bound s / (Hk - 1) in [-1, 1] units = s (H - 1) / (2 (Hk - 1)) pixels
        range_y = self.factor * h_max / (2 * iy.amax().clamp(min=1))
        range_x = self.factor * w_max / (2 * ix.amax().clamp(min=1))
        ref_y, ref_x = self._reference_points(iy, ix, h_max, w_max)
        py = ref_y[None, :, None] + off[:, 0].tanh() * range_y  # (B*g, Hk, Wk)
        px = ref_x[None, None, :] + off[:, 1].tanh() * range_x
        sampled = bilinear_gather(t.reshape(b * g, self.cg, h, w), py, px)  # (B*g, cg, Ns)
        ns = sampled.shape[-1]
        sampled = sampled.reshape(b, c, 1, ns)
        k = self.proj_k(sampled).reshape(b, m, hc, ns).transpose(2, 3)  # (B, m, Ns, hc)
        v = self.proj_v(sampled).reshape(b, m, hc, ns).transpose(2, 3)
        qh = q.reshape(b, m, hc, h * w).transpose(2, 3)  # (B, m, N, hc)
        out = fused_attention(qh, k, v, hc**-0.5).transpose(2, 3).reshape(b * m, hc, h * w)  # no (N x Ns) map
        out = out + self.rpe(q).reshape(b * m, hc, h * w)
        return x + self.proj_out(out.reshape(b, c, h, w))

    def _reference_points(self, iy: torch.Tensor, ix: torch.Tensor, h_max: torch.Tensor,
                          w_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel rows (Hk,) and columns (Wk,) of the reference grid of the form (module docstring); Hk - 1 is clamped
        at 1 in the official form (the official code divides by zero on a 1-pixel key grid)."""
        if self.form == "official":
            return ((iy + 0.5) * h_max / iy.amax().clamp(min=1), (ix + 0.5) * w_max / ix.amax().clamp(min=1))
        centre = (self.ksize - 1) / 2 - self.pad  # 0 for odd k: window i is centred on pixel i * stride
        return iy * self.stride + centre, ix * self.stride + centre

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.proj_out.weight.zero_()
            self.proj_out.bias.zero_()
        return True

    def attention_map_elements(self, h: int, w: int) -> int:
        """Elements of the attention working set of one training sample: 21 C N (norm, q, offsets, sampled keys and
        values, outputs and gradients; at stride > 1 the keys are fewer, so this bounds it), calibrated in
        docs/benchmarks.md. The (heads, N, Ns) map is not stored."""
        return 21 * self.heads * self.hc * h * w
