"""Insert attention (or any shape-preserving) modules into a model YAML without renumbering by hand.

    python tools/insert.py configs/yolov5.yaml CBAM@backbone_end SE@neck_outputs -o my.yaml
    python tools/insert.py yolov5s.yaml "CBAM{reduction: 8}@p4" ECA@after:C3 -o my.yaml
    python tools/insert.py configs/yolov5.yaml --positions      # what each position name means here
    python tools/insert.py configs/yolov5.yaml --identity-support  # which modules can start as the identity

Every ``from`` reference keeps pointing at the same producing layer; row comments that begin with the old
layer number are renumbered. The result is built before anything is written; on any error nothing is.
The work is done by ``models/surgery/insertion.py`` (the graph and positions) and ``models/parse/text.py`` (the text).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import tools.common  # noqa: F401  (offline environment)
    from models.parse.read import load_config
    from models.surgery.graph import describe_positions
    from models.surgery.insertion import build_yaml_text, identity_support
    from models.registry import ConfigError
    from models.parse.text import write_text

    from models.surgery.spec import POSITIONS_HELP

    ap = argparse.ArgumentParser(description=__doc__.rstrip() + "\n\n" + POSITIONS_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cfg", nargs="?", help="model YAML: a path or a name in configs/ (yolov5s.yaml picks scale s)")
    ap.add_argument("specs", nargs="*", help="MODULE[ARGS]@POSITION, e.g. CBAM@backbone_end SE@neck_outputs")
    ap.add_argument("-o", "--output", help="where to write the new YAML (default: print it)")
    ap.add_argument("--identity-blend", action="store_true",
                    help="wrap inserted modules that cannot start as the identity (SE, CBAM, ...) in ResidualBlend")
    ap.add_argument("--positions", action="store_true", help="list the layers and what each position name means")
    ap.add_argument("--identity-support", action="store_true",
                    help="list which attention modules can start as the identity on their own (the rest need --identity-blend)")
    args = ap.parse_args(argv)
    if args.identity_support:
        print(identity_support())
        return 0
    if not args.cfg:
        ap.error("give a model YAML")
    try:
        if args.positions:
            d = load_config(args.cfg)
            print(describe_positions(d, Path(d["yaml_file"]).name))
            return 0
        note = [f"# Built by tools/insert.py from {Path(str(args.cfg)).name}: {' '.join(args.specs)}"]
        text, result = build_yaml_text(args.cfg, args.specs, identity_blend=args.identity_blend, note=note)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output:
        write_text(Path(args.output), text)
        print(result.summary(), file=sys.stderr)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
