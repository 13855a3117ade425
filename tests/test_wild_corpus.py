"""Forks and blog posts (tests/fixtures/wild): every YAML builds as at home, builds with every difference stated in a
warning, or is refused with one line per problem; none differs silently (issue 21, item 5; docs/peers.md)."""

from __future__ import annotations

import re

import pytest

from tools.wild import CORPUS, counts, load_corpus, outcomes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_corpus_is_recorded_with_its_sources():
    entries = load_corpus()
    assert len(entries) >= 60 and {e["style"] for e in entries} == {"yolov5", "yolov7", "ultralytics"}
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]), e["id"]
        assert "params" in e["home"] or "error" in e["home"], e["id"]
    assert CORPUS.is_file()


def test_no_yaml_differs_silently():
    results = outcomes()
    silent = [(o.entry["id"], o.home, o.params, o.layers) for o in results if o.kind in ("silent", "base differs")]
    assert silent == []
    assert counts(results)["exact"] >= 39  # as measured when the corpus was added: raise it, never lower it


def test_every_stated_difference_is_a_warning_on_the_layer_that_differs():
    for o in (o for o in outcomes() if o.kind == "stated"):
        for i, kind, theirs, ours, warned in o.layers:
            assert theirs == ours or warned, (o.entry["id"], i, kind, theirs, ours)
        assert all("\n" not in w for w in o.warnings), o.entry["id"]  # one line each


def test_every_refusal_is_one_line_per_problem():
    for o in (o for o in outcomes() if o.error):
        lines = o.error.splitlines()
        if len(lines) > 1:  # several unknown names: a heading, then one line per name with the layers using it
            assert re.fullmatch(r".*: \d+ layer names are not provided here:", lines[0]), lines[0]
            names = [re.match(r"  layers? [\d, ]+ \(([^)]+)\): ", line).group(1) for line in lines[1:]]
            assert len(names) == len(set(names)), (o.entry["id"], names)
