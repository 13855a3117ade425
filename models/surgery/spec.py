"""An insertion request, ``MODULE[ARGS]@POSITION``, and the error every failed insertion raises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from models.registry.values import flow
from models.registry import ConfigError

SPEC_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(\[.*\]|\{.*\})?\s*@\s*(\S.*?)\s*$", re.S)
POSITIONS_HELP = """\
A spec is ``MODULE[ARGS]@POSITION``; ``[ARGS]`` (a YAML list) or ``{KEYWORDS}`` is optional. Positions:

    <k> or after:<k>   after layer k (the new module reads layer k and becomes layer k+1)
    backbone_end       after the last backbone row (YOLOv5: SPPF)
    p3, p4, p5, ...    after the backbone layer of stride 8, 16, 32, ... that the neck reads
    neck_outputs       on every input of the detection head, just before it (alias: head_inputs)
    after:<Type>       after every row of that type, e.g. after:C3
"""  # the one description of the spec syntax: this package's docs and tools/insert.py --help show it
POSITION_NAMES = ("backbone_end", "neck_outputs", "head_inputs", "p3", "p4", "p5", "after:<Type>", "<index>")


class InsertError(ConfigError):
    """An insertion that cannot be done; the message names what was asked and what exists."""


@dataclass
class Insertion:
    """One requested insertion: ``module`` with YAML ``args`` at ``position`` (as the user wrote it)."""

    module: str
    args: list = field(default_factory=list)
    position: str = "backbone_end"
    comment: str | None = None  # text after the layer number in the new row's comment

    @property
    def text(self) -> str:
        args = flow(self.args) if self.args else ""
        return f"{self.module}{args}@{self.position}"



def parse_insertion(text: str) -> Insertion:
    """``"CBAM@backbone_end"``, ``"CBAM[16, 7]@p4"``, ``"SE{reduction: 8}@after:C3"`` -> :class:`Insertion`."""
    m = SPEC_RE.match(text)
    if not m:
        raise InsertError(f"'{text}' is not a module spec; write MODULE@POSITION, e.g. CBAM@backbone_end, "
                          f"CBAM[16, 7]@p4 or 'SE{{reduction: 8}}@neck_outputs'. Positions: {', '.join(POSITION_NAMES)}")
    name, argtext, position = m.groups()
    args: list = []
    if argtext:
        try:
            parsed = yaml.safe_load(argtext)
        except yaml.YAMLError as e:
            raise InsertError(f"'{text}': arguments {argtext} are not a YAML list or mapping: {e}") from None
        args = parsed if isinstance(parsed, list) else [parsed]
    return Insertion(name, args, position)
