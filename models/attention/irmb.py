"""iRMB: the Inverted Residual Mobile Block of EMO.

Zhang, Li, Li, Liu, Xue, Zhang, Jiang, Huang, Wang, Wang, "Rethinking Mobile Block for Efficient Attention-based
Models", ICCV 2023, arXiv:2301.01146. Official code: zhangzjn/EMO (``model/emo.py``, ``iRMB``).

One residual around an inverted bottleneck whose efficient operator is window attention followed by a depthwise
conv (the paper's EW-MHSA + DW-Conv, with expansion ratio lambda = ``exp_ratio``):

    t = Norm(x);  A = softmax(Q K^T / sqrt(d)) per window, Q, K = 1x1(C -> 2C)(t) split into C / dim_head heads
    z = A act(1x1(C -> lambda C)(t))          (attn_pre=True: z = act(1x1(A t)), the EMO models' order)
    y = x + 1x1(lambda C -> C)(z + SiLU(BN(DW kxk(z))))

Windows are ws x ws (``window_size``); the map is zero-padded at the bottom/right to multiples of ws after the
norm (padded tokens take part in attention, as in the official code) and the output cropped back, so any H, W works.

Defaults are the official ``iRMB`` class's (what the fork YAMLs ``[-1, 1, iRMB, [C]]`` build): exp_ratio 1,
dim_head 64, window 7, DW 3x3, BatchNorm input norm (eps 1e-6), ReLU, no q/k/v bias, attention on v. The EMO
models' attention stages use exp_ratio 2-5, dim_head 16-32, DW 5x5, ``norm_layer="ln_2d"``, ``act_layer="gelu"``,
``qkv_bias=True``, ``attn_pre=True``; all of these are arguments.

Departures from the official code:
- Shape-preserving only (c_out = c_in, stride 1, skip on), as a YOLO layer must be; the downsampling iRMB (stride 2,
  no skip) and the attention-free variant (``attn_s=False``) are not offered, nor SE (``se_ratio``, 0 in every
  attention block of EMO), grouped v, dilation, dropout and drop-path.
- Heads: C / dim_head where dim_head divides C (the official code asserts); otherwise the nearest divisor of C
  (and of lambda C) below, noted in ``build_notes``; the scale is the actual head width^-0.5.
- The DW conv kernel must be odd (the official padding ceil((k - 1) / 2) changes the size for even k).
- BatchNorms are ``BatchNorm2dSafe`` (batch-1 1x1 maps in training), eps 1e-6 as the official ``get_norm``.
- The window attention runs through ``scaled_dot_product_attention`` (``models/attention/_sdpa.py``).

Two forms (``form``):
- ``paper`` (default): contiguous ws x ws windows, Swin-like without shift, as the paper's EW-MHSA and the authors'
  answer in zhangzjn/EMO issue #3 describe it.
- ``official``: the released code's partition, ``(h1 n1) (w1 n2) -> (n1 n2) h1 w1``: window (i, j) holds the pixels
  (i + n1 a, j + n2 b), a strided grid spanning the whole padded map (n1 = Hp / ws windows per column), i.e. a
  dilated, global-reach window. Same parameters. Verified against the official ``iRMB``
  (tests/fixtures/golden/iRMB.npz, iRMB__emo.npz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, check_form, divisor_at_most
from models.attention._sdpa import attend
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "none": lambda t: t}
NORMS = ("bn_2d", "ln_2d", "none")


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (the official ``ln_2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _windows(t: torch.Tensor, heads: int, ws: int, grid: bool) -> torch.Tensor:
    """(B, heads * d, Hp, Wp) -> (B * windows, heads, ws * ws, d): contiguous windows, or the official strided grid."""
    b, c, hp, wp = t.shape
    nh, nw = hp // ws, wp // ws
    if grid:  # pixel (h1 * nh + i, w1 * nw + j) belongs to window (i, j)
        t = t.reshape(b, heads, c // heads, ws, nh, ws, nw).permute(0, 4, 6, 1, 3, 5, 2)
    else:  # pixel (i * ws + h1, j * ws + w1) belongs to window (i, j)
        t = t.reshape(b, heads, c // heads, nh, ws, nw, ws).permute(0, 3, 5, 1, 4, 6, 2)
    return t.reshape(b * nh * nw, heads, ws * ws, c // heads)


def _unwindows(t: torch.Tensor, b: int, hp: int, wp: int, ws: int, grid: bool) -> torch.Tensor:
    """Inverse of :func:`_windows`: (B * windows, heads, ws * ws, d) -> (B, heads * d, Hp, Wp)."""
    _, heads, _, d = t.shape
    nh, nw = hp // ws, wp // ws
    t = t.reshape(b, nh, nw, heads, ws, ws, d)
    if grid:
        t = t.permute(0, 3, 6, 4, 1, 5, 2)  # (B, heads, d, h1, nh, w1, nw)
    else:
        t = t.permute(0, 3, 6, 1, 4, 2, 5)  # (B, heads, d, nh, h1, nw, w1)
    return t.reshape(b, heads * d, hp, wp)


@register_attention(
    "iRMB",
    category="hybrid",
    paper="Rethinking Mobile Block for Efficient Attention-based Models",
    arxiv="2301.01146",
    year=2023,
    placement="backbone_end",
    notes="Blog/ODS-style ports paste the official iRMB (strided-grid windows, BatchNorm, ReLU, exp_ratio 1, "
    "dim_head 64: asserts C % 64 == 0) as [-1, 1, iRMB, [C]]; here: contiguous windows by default "
    "(form=official: the code's grid), heads clamp to divisors, BatchNorm2dSafe.",
    renamed={"dw_ks": "kernel_size"},
    forms=FORMS,
)
class iRMB(AttentionModule):  # noqa: N801 - the paper's name
    """x + proj(z + SiLU(BN(DW(z)))), z = window attention of Norm(x): exp_ratio 1, dim_head 64, window 7, DW 3x3."""

    def __init__(self, c1: int, exp_ratio: float = 1.0, dim_head: int = 64, window_size: int = 7,
                 kernel_size: int = 3, qkv_bias: bool = False, attn_pre: bool = False, norm_layer: str = "bn_2d",
                 act_layer: str = "relu", form: str = "paper"):
        super().__init__()
        self.form = check_form("iRMB", form, FORMS)
        if kernel_size % 2 == 0 or window_size < 1 or dim_head < 1:
            raise ValueError(f"iRMB needs an odd kernel_size, window_size >= 1 and dim_head >= 1, got "
                             f"kernel_size={kernel_size}, window_size={window_size}, dim_head={dim_head}")
        if norm_layer not in NORMS or act_layer not in ACTIVATIONS:
            raise ValueError(f"iRMB norm_layer must be one of {NORMS} and act_layer one of {tuple(ACTIVATIONS)}, "
                             f"got {norm_layer!r}, {act_layer!r}")
        c_mid = int(c1 * exp_ratio)
        if c_mid < 1:
            raise ValueError(f"iRMB: exp_ratio={exp_ratio} leaves {c_mid} channels at C={c1}")
        heads = divisor_at_most(c1, max(1, c1 // dim_head))
        while not attn_pre and c_mid % heads:
            heads -= 1
        asked = c1 // dim_head if c1 % dim_head == 0 else f"{c1}/{dim_head}"
        self.heads = self.clamp("heads", asked, heads, f"C={c1}, dim_head={dim_head}, expanded {c_mid}")
        self.scale = (c1 // self.heads) ** -0.5
        self.ws, self.attn_pre, self.act_layer = int(window_size), bool(attn_pre), act_layer
        self.widths_differ = not self.attn_pre and c_mid != c1  # v heads wider/narrower than q, k heads
        if norm_layer == "bn_2d":
            self.norm = BatchNorm2dSafe(c1, eps=1e-6)
        elif norm_layer == "ln_2d":
            self.norm = ChannelLayerNorm(c1, eps=1e-6)
        else:
            self.norm = nn.Identity()
        self.qk = nn.Conv2d(c1, 2 * c1, 1, bias=qkv_bias)
        self.v = nn.Conv2d(c1, c_mid, 1, bias=qkv_bias)
        self.conv_local = nn.Conv2d(c_mid, c_mid, kernel_size, padding=kernel_size // 2, groups=c_mid, bias=False)
        self.conv_local_bn = BatchNorm2dSafe(c_mid, eps=1e-6)
        self.proj = nn.Conv2d(c_mid, c1, 1, bias=False)

    def _attention(self, t: torch.Tensor) -> torch.Tensor:
        """Window attention of the normalised map t (B, C, H, W) -> (B, lambda C, H, W)."""
        act = ACTIVATIONS[self.act_layer]
        b, _, h, w = t.shape
        ws, grid = self.ws, self.form == "official"
        t = F.pad(t, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = t.shape[-2:]
        q, k = _windows(self.qk(t), 2 * self.heads, ws, grid).chunk(2, 1)
        v = t if self.attn_pre else act(self.v(t))
        out = attend(q, k, _windows(v, self.heads, ws, grid), self.scale, self.widths_differ)
        out = _unwindows(out, b, hp, wp, ws, grid)[..., :h, :w]
        return act(self.v(out)) if self.attn_pre else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self._attention(self.norm(x))
        z = z + F.silu(self.conv_local_bn(self.conv_local(z)))
        return x + self.proj(z)

    def init_identity(self) -> bool:
        """Zero the output projection: y = x exactly."""
        nn.init.zeros_(self.proj.weight)
        return True

    def extra_repr(self) -> str:
        return f"heads={self.heads}, window_size={self.ws}, attn_pre={self.attn_pre}, form={self.form!r}"
