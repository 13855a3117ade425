"""External attention on NCHW feature maps.

Guo, Liu, Mu, Hu, "Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks",
arXiv:2105.02358 (2021; TPAMI 2022). Official code: MenghaoGuo/EANet (segmentation head ``External_attention``).

The official image block: t = biased 1x1 conv C -> C of x; attn = M_k t with M_k a bias-free map C -> S over
channels (the external key memory, S = 64); double normalisation: softmax over the N = H*W positions, then each
position's S weights divided by their sum (+1e-9); t = M_v attn with M_v a bias-free S -> C map (the value memory,
initialised as M_k's transpose); y = x + BN(bias-free 1x1 conv C -> C of t), then ReLU in the official block.

Forms (``form=``):

- ``"paper"`` (default): no final ReLU (``relu`` switches it on; inside a YOLO backbone the block refines SiLU
  features, which a final ReLU would clip), and M_v a parameter of its own, initialised as a copy of M_k^T.
- ``"official"``: the official block (golden test ``ExternalAttention``): the final ReLU and M_v = M_k^T always, one
  parameter (``mk.weight``; no ``mv.weight`` key). The official code shares one storage between two parameters: with
  plain SGD the updates are identical, with momentum, Adam or weight decay its two optimizer states on one memory are
  not reproduced.

Departures from the paper:
- Form ``"paper"``: no final ReLU by default and untied memories (above). Init std is the official effective
  sqrt(2 / C) (the official init loop re-draws M_v last, which through the shared storage redraws M_k).
- The softmax over N and the normalisation over S run in fp32 with autocast off (in fp16 the 1e-9 eps underflows and
  an underflowed softmax column gives 0/0).
- Convolutions use the official init (normal, std sqrt(2 / (k k out_channels))); the output BN is
  ``BatchNorm2dSafe`` (weight 1, bias 0). ``init_identity()`` zeroes it (exact without the final ReLU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention._common import BatchNorm2dSafe, at_least_fp32, autocast_off, check_form, form_option
from models.registry.protocol import AttentionModule
from models.registry import register_attention

FORMS = ("paper", "official")


@register_attention(
    "ExternalAttention",
    category="linear attention",
    paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks",
    arxiv="2105.02358",
    year=2021,
    placement="backbone_end",
    dense=False,
    notes="EAP's version takes (B, N, C) tokens (fails on NCHW), has no conv/BN/residual; "
    "this one is the official EANet image block (final ReLU off and M_v untied by default; form='official': both).",
    forms=FORMS,
)
class ExternalAttention(AttentionModule):
    """y = x + BN(conv(M_v(dnorm(M_k(conv(x)))))), memory size S = 64."""

    def __init__(self, c1: int, s: int = 64, relu: bool | None = None, form: str = "paper"):
        super().__init__()
        self.form = check_form("ExternalAttention", form, FORMS)
        self.relu = bool(form_option("ExternalAttention", form, "relu", relu, {"paper": False, "official": True},
                                     free=("paper",)))
        self.conv_in = nn.Conv2d(c1, c1, 1)
        self.mk = nn.Conv1d(c1, s, 1, bias=False)
        self.tied = form == "official"
        self.mv = None if self.tied else nn.Conv1d(s, c1, 1, bias=False)
        self.conv_out = nn.Conv2d(c1, c1, 1, bias=False)
        self.bn = BatchNorm2dSafe(c1)
        for m in (self.conv_in, self.conv_out):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.out_channels))  # 1x1: k*k*out = out
        # Officially M_v's init runs last and (through the shared storage) sets M_k too: std sqrt(2 / C).
        nn.init.normal_(self.mk.weight, 0.0, math.sqrt(2.0 / c1))
        if self.mv is not None:
            with torch.no_grad():
                self.mv.weight.copy_(self.mk.weight.transpose(0, 1))

    def memory_v(self, attn: torch.Tensor) -> torch.Tensor:
        """M_v applied to the (B, S, N) attention: its own weight, or M_k^T (tied, form 'official')."""
        if self.mv is not None:
            return self.mv(attn)
        return F.conv1d(attn, self.mk.weight.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.conv_in(x).flatten(2)  # (B, C, N)
        logits = self.mk(t)  # (B, S, N)
        with autocast_off(x):
            attn = at_least_fp32(logits).softmax(-1)  # over positions
            attn = attn / (1e-9 + attn.sum(1, keepdim=True))  # over memory slots
        t = self.memory_v(attn.to(t.dtype)).reshape(b, c, h, w)
        y = x + self.bn(self.conv_out(t))
        return torch.relu(y) if self.relu else y

    def init_identity(self) -> bool:
        with torch.no_grad():
            self.bn.weight.zero_()
            self.bn.bias.zero_()
        return not self.relu
