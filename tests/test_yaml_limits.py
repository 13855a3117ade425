"""Bad or hostile model YAMLs end in one clear error naming the file, the layer and the key, fast and in bounded
memory: size bombs (repeats, multiples, channels, parameters, aliases, huge files), typos and malformed values."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.registry import ConfigError
from models.yolo import build_model

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
nc: 2
depth_multiple: 0.33
width_multiple: 0.25
backbone:
  - [-1, 1, Conv, [64, 6, 2, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C3, [128]]
  - [-1, 1, Conv, [256, 3, 2]]
head:
  - [[-1, 2], 1, Concat, [1]]
  - [[-1], 1, Detect, [nc]]
"""

BOMBS = {
    "repeats": (BASE.replace("[-1, 3, C3, [128]]", "[-1, 1000000000, C3, [128]]"), "layer 2 (C3)", "repeats"),
    "depth_multiple": (BASE.replace("depth_multiple: 0.33", "depth_multiple: 1000"), "depth_multiple", "(0, 4]"),
    "width_multiple": (BASE.replace("width_multiple: 0.25", "width_multiple: 25"), "width_multiple", "0.25?"),
    "channels": (BASE.replace("[256, 3, 2]", "[10000000, 3, 2]"), "layer 3 (Conv)", "more than 8192"),
    "parameters": (BASE.replace("width_multiple: 0.25", "width_multiple: 4").replace("[256, 3, 2]", "[2048, 3, 2]")
                   .replace("[-1, 3, C3, [128]]", "[-1, 30, C3, [2048]]"), "parameters (limit 1,000 M)", "layer 2 (C3)"),
    "aliases": ("nc: 2\nx: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "z: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" + BASE.split("\n", 1)[1], "aliases", "line"),
    "huge_file": (BASE + "# " + "x" * (2 << 20) + "\n", "too large", "bytes"),
}


def test_size_bombs_fail_fast_in_bounded_memory(tmp_path):
    """Every bomb, built in a child process allowed 2 GB more address space and 120 s, fails with its message."""
    files = {}
    for name, (text, *_) in BOMBS.items():
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(text)
    script = textwrap.dedent(f"""
        import json, resource, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import offline; offline.configure()
        from models.yolo import build_model
        build_model({{"nc": 1, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[[-1], 1, "Detect", ["nc"]]]}})
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()  # address space after importing torch (CUDA build)
        resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), used + (2 << 30)))  # 2 GB more, no further
        out = {{}}
        for name, path in json.loads(sys.argv[1]).items():
            t0 = time.perf_counter()
            try:
                build_model(path)
                out[name] = ["built", 0.0]
            except Exception as e:
                out[name] = [f"{{type(e).__name__}}: {{e}}", time.perf_counter() - t0]
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script, json.dumps({k: str(v) for k, v in files.items()})],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (_, *expected) in BOMBS.items():
        message, seconds = results[name]
        assert message.startswith("ConfigError: "), (name, message[:300])
        assert str(files[name]) in message, (name, message[:300])
        for part in expected:
            assert part in message, (name, part, message[:300])
        assert seconds < 20, (name, seconds)


@pytest.mark.parametrize("change, expected", [
    (("nc: 2", "nc: 0"), "nc must be a positive whole number of classes, got 0"),
    (("nc: 2", "nc: -1"), "got -1"),
    (("nc: 2", "nc: abc"), "got 'abc'"),
    (("nc: 2\n", "nc: 2\nnc: 3\n"), "key 'nc' appears twice"),
    (("width_multiple: 0.25", "width_multiple: 0"), "width_multiple must be in (0, 4], got 0"),
    (("width_multiple: 0.25", "width_multiple: .nan"), "width_multiple must be a finite number"),
    (("width_multiple: 0.25", "width_multiple: 1.0e6"), "was read as text"),
    (("[128, 3, 2]", "[0, 3, 2]"), "layer 1 (Conv): first argument must be the output channel count (a positive int)"),
    (("[128, 3, 2]", "[-64, 3, 2]"), "layer 1 (Conv)"),
    (("  - [[-1], 1, Detect, [nc]]\n", ""), "the last row must be a detection head"),
])
def test_malformed_values_name_the_key_and_what_to_write(tmp_path, change, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace(*change))
    with pytest.raises(ConfigError) as e:
        build_model(str(path))
    assert expected in str(e.value) and str(path) in str(e.value)


def test_a_non_utf8_byte_is_an_error_not_a_silently_different_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(BASE.replace("C3", "C\xff3").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"line 7: byte 0xff is not UTF-8"):
        build_model(str(path))


def test_bounds_leave_every_shipped_config_alone():
    """The largest shipped models are far inside the limits (yolov7x: 71 M parameters)."""
    assert sum(p.numel() for p in build_model("yolov7x.yaml").parameters()) > 70_000_000
    assert sum(p.numel() for p in build_model("yolov5x-cbam.yaml").parameters()) > 80_000_000
