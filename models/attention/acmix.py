"""ACmix: mixing self-attention and convolution on shared 1x1 projections.

Pan, Ge, Lu, Song, Chen, Huang, Huang, "On the Integration of Self-Attention and Convolution", CVPR 2022,
arXiv:2111.14556. Official code: LeapLabTHU/ACmix (``ResNet/test_bottleneck.py``, ``ACmix``).

q, k, v = biased 1x1 convs C -> C, 4 heads of d = C/4. Attention path (7x7 window): a 2-channel coordinate grid
(linspace(-1, 1) along W and H) through a 1x1 conv 2 -> d is the position encoding pe; logits over the 49 neighbours
are sum_d (q d^-0.5)(k_nb + pe_q - pe_nb), softmax over the neighbours, out_att = sum att v_nb. Convolution path: a
bias-free 1x1 "fc" maps the 3 x heads q/k/v head features to 9 per head-dim channel, and a grouped 3x3 conv
(9d -> C, groups d, initialised as the 9 shift kernels) gives out_conv. y = rate1 out_att + rate2 out_conv (0.5 each).

Forms (``form=``):

- ``paper`` (default): a position's window is the part of its 7x7 neighbourhood inside the image (zero-padded and
  masked out of the softmax); any H, W >= 1. The grouped conv has a zero-initialised bias (+C parameters), which
  neither the paper nor the official code has.
- ``official``: the released code (golden test ``ACmix``): k, v and pe reflection-padded by 3 before the windows, no
  mask, no bias on the grouped conv. Where ``ReflectionPad2d`` raises (maps under 4x4) the reflection folds on
  (period 2(n - 1)); the padding is an index gather (deterministic backward, dynamic ONNX). The forms agree at
  positions at least 3 pixels from the border.

Departures from the paper (both forms):
- The coordinate grid follows the input's dtype and device (the official one is float32 and ``.cuda()``).
- Grouped-conv padding k_conv // 2 (officially 1), stride 1; the unused ``dilation`` argument is dropped.
- The 49 taps are a loop over shifted views of the padded k - pe and v (the q . pe_q term cancels in the softmax),
  not an unfold of 49 copies. Softmax in fp32. Heads clamp to a divisor of C; ``head``/``heads``/``n_heads`` are
  old names of ``num_heads``.
- ACmix replaces a 3x3 conv (no residual), so it is not an identity at init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import at_least_fp32, check_form, divisor_at_most, linspace_pm1
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")


def _reflect_index(n, p: int, device: torch.device) -> torch.Tensor:
    """Source index of each of the n + 2p rows of a reflection padding by p, folded for any n >= 1."""
    last = torch.arange(n, device=device).amax()  # n - 1 (a tensor, so ONNX stays dynamic)
    period = (2 * last).clamp(min=1)
    r = torch.remainder(torch.arange(n + 2 * p, device=device) - p, period)
    return torch.minimum(r, period - r)


def reflect_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``ReflectionPad2d(p)`` of (..., H, W) for every H, W >= 1 (equal to it where p < H and p < W)."""
    h, w = x.shape[-2:]
    return x.index_select(-2, _reflect_index(h, p, x.device)).index_select(-1, _reflect_index(w, p, x.device))


@register_attention(
    "ACmix",
    category="conv + local self-attention",
    paper="On the Integration of Self-Attention and Convolution",
    arxiv="2111.14556",
    year=2022,
    placement="backbone_end",
    dense=False,
    notes="Official/EAP: ReflectionPad2d(3) fails below 4x4 and is CUDA-nondeterministic; position() is float32 "
    "and .cuda() (breaks .half()). Here (paper form): masked zero-padded window, grid in x.dtype, dep_conv bias "
    "(zero-init, +C params; form=official: reflection, no mask, no bias). 7x7 taps as views, no unfold.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
    forms=FORMS,
)
class ACmix(AttentionModule):
    """rate1 * local 7x7 self-attention + rate2 * shift-initialised grouped conv, sharing q/k/v."""

    def __init__(self, c1: int, kernel_att: int = 7, num_heads: int = 4, kernel_conv: int = 3, form: str = "paper"):
        super().__init__()
        check_form("ACmix", form, FORMS)
        if kernel_att % 2 == 0 or kernel_conv % 2 == 0:
            raise ValueError(f"ACmix kernels must be odd, got kernel_att={kernel_att}, kernel_conv={kernel_conv}")
        self.form = form
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.hd = c1 // self.heads
        self.k_att, self.k_conv = kernel_att, kernel_conv
        self.conv1 = nn.Conv2d(c1, c1, 1)
        self.conv2 = nn.Conv2d(c1, c1, 1)
        self.conv3 = nn.Conv2d(c1, c1, 1)
        self.conv_p = nn.Conv2d(2, self.hd, 1)
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * self.heads, kk, 1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.hd, c1, kernel_conv, padding=kernel_conv // 2, groups=self.hd,
                                  bias=form == "paper")
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        with torch.no_grad():  # shift kernels: input i of every group is the 1 at kernel position i
            shift = torch.zeros(kk, kernel_conv, kernel_conv)
            for i in range(kk):
                shift[i, i // kernel_conv, i % kernel_conv] = 1.0
            self.dep_conv.weight.copy_(shift.unsqueeze(0).expand(c1, -1, -1, -1))
            if self.dep_conv.bias is not None:
                self.dep_conv.bias.zero_()

    def _local_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The 7x7 window attention, (B, C, H, W), tap by tap over shifted views (no 49-fold copies)."""
        b, c, h, w = q.shape
        m, d, ka = self.heads, self.hd, self.k_att
        p = (ka - 1) // 2
        loc = torch.stack(
            (linspace_pm1(w, q)[None, :].expand(h, -1), linspace_pm1(h, q)[:, None].expand(-1, w)), 0
        ).unsqueeze(0)  # (1, 2, H, W): channel 0 varies along W, channel 1 along H
        pe = self.conv_p(loc)  # (1, d, H, W)
        q_att = q.reshape(b * m, d, h, w) * d**-0.5
        kpe = k.reshape(b * m, d, h, w) - pe.to(k.dtype)
        v = v.reshape(b * m, d, h, w)
        if self.form == "official":
            kpe, v, inside = reflect_pad(kpe, p), reflect_pad(v, p), None
        else:
            kpe, v = F.pad(kpe, (p, p, p, p)), F.pad(v, (p, p, p, p))
            ones = F.pad(torch.ones(1, 1, h, w, dtype=q.dtype, device=q.device), (p, p, p, p))
        taps = [(i, j) for i in range(ka) for j in range(ka)]
        logits = torch.stack([(q_att * kpe[..., i:i + h, j:j + w]).sum(1) for i, j in taps], 1)  # (B*m, ka^2, H, W)
        logits = at_least_fp32(logits)
        if self.form == "paper":
            inside = torch.cat([ones[:, :, i:i + h, j:j + w] for i, j in taps], 1) > 0  # (1, ka^2, H, W)
            logits = logits.masked_fill(~inside, float("-inf"))
        att = logits.softmax(1).to(v.dtype)
        out = att[:, :1] * v[..., :h, :w]
        for t, (i, j) in enumerate(taps[1:], 1):
            out = out + att[:, t:t + 1] * v[..., i:i + h, j:j + w]
        return out.reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m, d = self.heads, self.hd
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        out_att = self._local_attention(q, k, v)
        # convolution path
        qkv = torch.cat((q.reshape(b, m, d, h * w), k.reshape(b, m, d, h * w), v.reshape(b, m, d, h * w)), 1)
        f = self.fc(qkv)  # (B, k_conv^2, d, N)
        f = f.permute(0, 2, 1, 3).reshape(b, -1, h, w)  # channel = head_dim index * k_conv^2 + tap
        out_conv = self.dep_conv(f)
        return self.rate1 * out_att + self.rate2 * out_conv
