"""YOLOv8's C2f and YOLO11's C3k2 with an attention module inside every bottleneck, placeable as one row.

The YOLOv8/YOLO11 analogue of :class:`models.layers.attention_blocks.C3Att`: the block's own row, as ultralytics
writes it, followed by the attention module's name and, optionally, a dict of its hyperparameters::

    - [-1, 3, C2fAtt, [128, True, CBAM]]                    # C2f [128, True] with CBAM in its 3 bottlenecks
    - [-1, 2, C3k2Att, [256, False, 0.25, CBAM]]            # C3k2 [256, False, 0.25] (YOLO11 backbone)
    - [-1, 2, C3k2Att, [512, True, SE, {reduction: 8}]]     # C3k2 [512, True] (C3k inner blocks)
    - [-1, 1, C3k2Att, [1024, True, 0.5, True, ECA]]        # YOLO26's last C3k2 (attn=True: + PSABlock)

Where the attention sits: after each bottleneck's second 3x3 conv, before its residual add (as in C3Att); in C3k
inner blocks (``c3k``, forced at scales m/l/x as for C3k2) inside each of the C3k's two bottlenecks; with ``attn``
before the PSABlock. The dict may also set the block's own arguments by name (C2f: ``shortcut``, ``g``, ``e``; C3k2:
``c3k``, ``e``, ``attn``, ``g``, ``shortcut``) and ``blend: true`` (each attention wrapped in ResidualBlend).

Parameters (``A(c)``: the attention module alone at ``c`` channels; ``h = int(c2 * e)``, the block's hidden width)::

    C2fAtt  = C2f(c1, c2, n, shortcut, g, e) + n * A(h)
    C3k2Att = C3k2(c1, c2, n, c3k, e, attn, g, shortcut) + n * A(h)        (plain or attn bottlenecks)
            = C3k2(c1, c2, n, c3k, e, attn, g, shortcut) + 2n * A(h // 2)  (c3k: two bottlenecks of width h // 2 each)

State-dict keys extend the plain block's
(``m.<k>...att.*`` added), so a C2f/C3k2 of a pretrained model transfers into the block in its place
(``TRANSFER_FROM``), and with every attention at the identity it computes exactly what that block computed.
"""

from __future__ import annotations

import inspect

from torch import nn
from ultralytics.nn.modules import C2f, C3, C3k2, Conv
from ultralytics.nn.modules.block import PSABlock

from models.layers.attention_blocks import BottleneckAtt, attention_factory
from models.layers.families import FamilyRule, add_rule
from models.registry import LAYERS, ConfigError
from models.registry.protocol import IdentityInit, init_identity


def split_block_row(block: str, base, options: tuple) -> tuple[dict, str, dict, bool]:
    """A block row's options -> (the base block's arguments by name, attention name, attention keywords, blend).

    ``options`` are what the row writes after the output width: the base block's positional arguments (as its own
    row writes them), the attention's name, then optionally one dict of keywords (the base block's by name,
    ``blend``, the rest the attention's).
    """
    names = list(inspect.signature(base).parameters)[3:]  # after c1, c2, n
    k = next((i for i, o in enumerate(options) if isinstance(o, str)), None)
    if k is None:
        raise ValueError(f"{block}: name the attention module after {base.__name__}'s own arguments, e.g. "
                         f"[256, {'False, 0.25, ' if base is C3k2 else 'True, '}CBAM]")
    positional, rest = options[:k], options[k + 1:]
    if len(positional) > len(names):
        raise ValueError(f"{block}: {len(positional)} arguments before the attention name; {base.__name__} takes at "
                         f"most {len(names)} ({', '.join(names)})")
    block_args = dict(zip(names, positional))
    extra = {}
    for opt in rest:
        if not isinstance(opt, dict) or extra:
            raise ValueError(f"{block}: after the attention name only one dict of keywords may follow, got {opt!r}")
        extra = dict(opt)
    blend = bool(extra.pop("blend", False))
    for name in names:
        if name in extra:
            if name in block_args:
                raise ValueError(f"{block}: '{name}' given twice ({block_args[name]!r} and {extra[name]!r})")
            block_args[name] = extra.pop(name)
    return block_args, options[k], extra, blend


class C2fAtt(IdentityInit, C2f):
    """C2f whose bottlenecks each carry an attention module chosen by name (see the module docstring)."""

    TRANSFER_FROM = ("C2f",)

    def __init__(self, c1: int, c2: int, n: int = 1, *options):
        block_args, self.attention, kwargs, blend = split_block_row("C2fAtt", C2f, options)
        shortcut, g, e = block_args.get("shortcut", False), block_args.get("g", 1), block_args.get("e", 0.5)
        make = attention_factory(self.attention, (), kwargs, blend=blend, where="C2fAtt")
        nn.Module.__init__(self)
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(BottleneckAtt(self.c, self.c, make, shortcut, g, k=((3, 3), (3, 3)), e=1.0)
                               for _ in range(n))

    @property
    def label(self) -> str:
        return f"C2fAtt({self.attention})"

    def init_identity(self) -> bool:
        return all([init_identity(b.att) for b in self.m])  # list: call every one, even after a failure

    def extra_repr(self) -> str:
        return f"attention={self.attention}"


class C3kAtt(C3):
    """YOLO11's C3k (a C3 with k x k bottlenecks) with the attention inside each bottleneck."""

    def __init__(self, c1: int, c2: int, make, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 k: int = 3):
        super().__init__(c1, c2, 0, shortcut, g, e)  # n=0: the bottlenecks are built here
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(BottleneckAtt(c_, c_, make, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


class C3k2Att(IdentityInit, C3k2):
    """C3k2 whose bottlenecks each carry an attention module chosen by name (see the module docstring)."""

    TRANSFER_FROM = ("C3k2",)

    def __init__(self, c1: int, c2: int, n: int = 1, *options):
        a, self.attention, kwargs, blend = split_block_row("C3k2Att", C3k2, options)
        c3k, e, attn = a.get("c3k", False), a.get("e", 0.5), a.get("attn", False)
        g, shortcut = a.get("g", 1), a.get("shortcut", True)
        make = attention_factory(self.attention, (), kwargs, blend=blend, where="C3k2Att")
        nn.Module.__init__(self)
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        c = self.c
        self.m = nn.ModuleList(
            nn.Sequential(BottleneckAtt(c, c, make, shortcut, g), PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1)))
            if attn
            else C3kAtt(c, c, make, 2, shortcut, g)
            if c3k
            else BottleneckAtt(c, c, make, shortcut, g)
            for _ in range(n)
        )

    def attention_modules(self) -> list[nn.Module]:
        return [b.att for b in self.modules() if isinstance(b, BottleneckAtt)]

    @property
    def label(self) -> str:
        return f"C3k2Att({self.attention})"

    def init_identity(self) -> bool:
        return all([init_identity(att) for att in self.attention_modules()])

    def extra_repr(self) -> str:
        return f"attention={self.attention}"


def c3k_att_at_mlx(args: list, scale: str) -> list:
    """C3k2Att at scales m/l/x: ``c3k=True``, as ultralytics sets it for C3k2 (positional, or in the row's dict)."""
    if scale not in ("m", "l", "x"):
        return args
    args = list(args)
    if isinstance(args[-1], dict) and "c3k" in args[-1]:
        args[-1] = {**args[-1], "c3k": True}
    elif len(args) > 3 and isinstance(args[3], bool):
        args[3] = True
    else:
        args.insert(3, True)
    return args


LAYERS.add(C2fAtt, kind="repeat")
LAYERS.add(C3k2Att, kind="repeat")
add_rule("C3k2Att", FamilyRule(head_legacy=False, at_scale=c3k_att_at_mlx))
