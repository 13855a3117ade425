"""ACmix: mixing self-attention and convolution on shared 1x1 projections.

Pan, Ge, Lu, Song, Chen, Huang, Huang, "On the Integration of Self-Attention and Convolution", CVPR 2022,
arXiv:2111.14556. Official code: LeapLabTHU/ACmix (``ACmix`` module).

Stage I: q, k, v = 1x1 convs C -> C (with bias), heads = 4, head_dim d = C/4.
Attention path (window k_att = 7): a 2-channel coordinate grid (linspace(-1, 1) along W and along H) goes
through a 1x1 conv 2 -> d (positional encoding pe). For every position, logits over its 49 neighbours
are sum_d (q * d^-0.5) (k_nb + pe_q - pe_nb), softmax over the neighbours, out_att = sum att * v_nb.
Convolution path: a bias-free 1x1 "fc" maps the 3*heads stacked q/k/v head features to k_conv^2 = 9
features per head-dim channel, and a grouped 3x3 conv (9*d -> C, groups d) initialised as the 9 shift
kernels (bias 0) aggregates them: out_conv. Output: rate1 * out_att + rate2 * out_conv, rates 0.5 at init.

Departures from the paper:
- Window borders: the official code reflection-pads k, v and pe by 3, which fails on maps smaller than
  4x4 (3x3 raises) and whose backward is non-deterministic on CUDA. Here the window is zero-padded and
  neighbours outside the image are masked out of the softmax (-inf), i.e. each position attends to the
  in-image part of its 7x7 window. Identical to the official result for positions at least 3 pixels
  from the border.
- The coordinate grid is built in the input's dtype and device (the official ``position()`` builds it in
  float32 and calls ``.cuda()``, which breaks ``.half()`` and non-default GPUs), with arange so 1-pixel
  axes give [-1] also in ONNX.
- The grouped conv's padding is k_conv // 2 (officially hard-coded to 1), so odd k_conv other than 3 work.
  Stride is 1 (shape-preserving); the official unused ``dilation`` argument is dropped.
- The attention softmax is evaluated in fp32 and cast back. Heads clamp to a divisor of C (noted in
  ``build_notes``). The official ``head`` is called ``num_heads`` here, as in every module with heads (``head``,
  ``heads`` and ``n_heads`` are accepted in YAML rows).
- ACmix replaces a 3x3 conv (no residual), so it is not an identity at init.

Memory: the 7x7 window materialises 49 copies of k and v per position (as the official unfold does).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention._common import at_least_fp32, divisor_at_most, linspace_pm1, local_neighbourhood
from models.protocol import AttentionModule
from models.registry import register_attention


@register_attention(
    "ACmix",
    category="conv + local self-attention",
    paper="On the Integration of Self-Attention and Convolution",
    arxiv="2111.14556",
    year=2022,
    placement="backbone_end",
    dense=False,
    notes="Official/EAP: ReflectionPad2d(3) fails below 4x4 and is CUDA-nondeterministic; position() is float32 "
    "and .cuda() (breaks .half()). Here: masked zero-padded window, grid in x.dtype.",
    renamed={"heads": "num_heads", "head": "num_heads", "n_heads": "num_heads"},
)
class ACmix(AttentionModule):
    """rate1 * local 7x7 self-attention + rate2 * shift-initialised grouped conv, sharing q/k/v."""

    def __init__(self, c1: int, kernel_att: int = 7, num_heads: int = 4, kernel_conv: int = 3):
        super().__init__()
        if kernel_att % 2 == 0 or kernel_conv % 2 == 0:
            raise ValueError(f"ACmix kernels must be odd, got kernel_att={kernel_att}, kernel_conv={kernel_conv}")
        self.heads = self.clamp("heads", num_heads, divisor_at_most(c1, num_heads), f"C={c1}")
        self.hd = c1 // self.heads
        self.k_att, self.k_conv = kernel_att, kernel_conv
        self.conv1 = nn.Conv2d(c1, c1, 1)
        self.conv2 = nn.Conv2d(c1, c1, 1)
        self.conv3 = nn.Conv2d(c1, c1, 1)
        self.conv_p = nn.Conv2d(2, self.hd, 1)
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * self.heads, kk, 1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.hd, c1, kernel_conv, padding=kernel_conv // 2, groups=self.hd)
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        with torch.no_grad():  # shift kernels: input i of every group is the 1 at kernel position i
            shift = torch.zeros(kk, kernel_conv, kernel_conv)
            for i in range(kk):
                shift[i, i // kernel_conv, i % kernel_conv] = 1.0
            self.dep_conv.weight.copy_(shift.unsqueeze(0).expand(c1, -1, -1, -1))
            self.dep_conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m, d, ka = self.heads, self.hd, self.k_att
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)

        # attention path
        loc = torch.stack(
            (linspace_pm1(w, x)[None, :].expand(h, -1), linspace_pm1(h, x)[:, None].expand(-1, w)), 0
        ).unsqueeze(0)  # (1, 2, H, W): channel 0 varies along W, channel 1 along H
        pe = self.conv_p(loc)  # (1, d, H, W)
        q_att = q.reshape(b * m, d, h, w) * d**-0.5
        k_nb = local_neighbourhood(k.reshape(b * m, d, h, w), ka)  # (B*m, d, ka^2, H, W)
        pe_nb = local_neighbourhood(pe, ka)  # (1, d, ka^2, H, W)
        logits = (q_att.unsqueeze(2) * (k_nb + (pe.unsqueeze(2) - pe_nb).to(k_nb.dtype))).sum(1)  # (B*m, ka^2, H, W)
        inside = local_neighbourhood(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), ka)[:, 0] > 0
        att = at_least_fp32(logits).masked_fill(~inside, float("-inf")).softmax(1).to(v.dtype)
        v_nb = local_neighbourhood(v.reshape(b * m, d, h, w), ka)
        out_att = (att.unsqueeze(1) * v_nb).sum(2).reshape(b, c, h, w)

        # convolution path
        qkv = torch.cat((q.reshape(b, m, d, h * w), k.reshape(b, m, d, h * w), v.reshape(b, m, d, h * w)), 1)
        f = self.fc(qkv)  # (B, k_conv^2, d, N)
        f = f.permute(0, 2, 1, 3).reshape(b, -1, h, w)  # channel = head_dim index * k_conv^2 + tap
        out_conv = self.dep_conv(f)
        return self.rate1 * out_att + self.rate2 * out_conv
