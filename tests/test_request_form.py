"""The Space's guided fields as views of the request's YAML: an edit lands on its key and nothing else moves."""

from __future__ import annotations

import yaml

from factory.demo.demo import REQUEST
from factory.frontdoor import request_form
from factory.frontdoor.request_form import FIELDS

KEYS = [key for _, key, _ in FIELDS]
DATASET, TARGET, LR, EPOCHS = (KEYS.index(k) for k in ("datasets.0.path", "hub_model_id", "learning_rate",
                                                          "num_epochs"))


def test_an_edited_field_changes_its_line_and_keeps_every_comment():
    text = REQUEST.read_text()
    values = request_form.read(text)
    values[DATASET] = "  me/songs  "  # pasted with spaces around it
    out = request_form.write(text, values, [DATASET])
    before, after = text.splitlines(), out.splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed == [("  - path: factory/demo-instructions", "  - path: me/songs")], changed


def test_only_the_fields_the_user_edited_are_written():
    text = "base_model: a/b\nnum_epochs: 3  # three passes\nhub_model_id: me/x\n"
    synced = request_form.read(text)
    lagging = list(synced)  # the page filled these from an older text: the editor now says 3, a field says 2
    lagging[EPOCHS] = 2
    assert request_form.edited(lagging, synced) == [EPOCHS]
    assert request_form.edited(synced, synced) == []
    assert request_form.write(text, synced, request_form.edited(synced, synced)) == text
    assert request_form.edited(synced, None) == list(range(len(FIELDS)))  # before the page filled anything
    assert request_form.write(text, synced, list(range(len(FIELDS)))) == text  # same values: the same text


def test_numbers_emptied_fields_and_new_keys():
    text = "base_model: a/b  # the base\nlearning_rate: 2.0e-4\n"
    values = request_form.read(text)
    assert values[LR] == 2e-4 and isinstance(values[LR], float)
    values[LR], values[EPOCHS], values[TARGET], values[0] = 1e-4, 3.0, "me/y", ""
    out = request_form.write(text, values, [LR, EPOCHS, TARGET, 0])
    data = yaml.safe_load(out)
    assert data == {"learning_rate": 1e-4, "num_epochs": 3, "hub_model_id": "me/y"}  # an emptied field: no key
    assert isinstance(data["num_epochs"], int)
    values = request_form.read("{}")
    values[DATASET] = "me/data"
    assert yaml.safe_load(request_form.write("{}", values, [DATASET])) == {"datasets": [{"path": "me/data"}]}


def test_text_that_is_not_a_mapping_is_never_overwritten():
    for text in ("base_model: [", "- a\n- b\n", "just words", "a: &x 1\nb: *x\n"):
        values = [None] * len(FIELDS)
        values[TARGET] = "me/z"
        assert request_form.write(text, values, [TARGET]) is None, text
        assert request_form.read(text) is None, text


def test_axolotl_examples_survive_a_round_trip_through_the_fields(shared):
    files = sorted((shared / "axolotl_examples").rglob("*.y*ml"))
    assert len(files) > 100
    kept = 0
    for path in files:
        text = path.read_text()
        values = request_form.read(text)
        if values is None:  # anchors or tags: a front door refuses those anyway
            continue
        assert request_form.write(text, values, list(range(len(FIELDS)))) == text, path
        values[TARGET] = "me/renamed"
        out = request_form.write(text, values, [TARGET])
        assert yaml.safe_load(out) == {**yaml.safe_load(text), "hub_model_id": "me/renamed"}, path
        assert [line for line in out.splitlines() if line.lstrip().startswith("#")] == \
            [line for line in text.splitlines() if line.lstrip().startswith("#")], path
        kept += 1
    assert kept > 100
