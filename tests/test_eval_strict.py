"""Malformed MMEB rows never change a score silently: each one stops the run with one line that
names the dataset, the file, the row and the field, or (``--skip-bad-items``) is counted as a
miss; rows ranked among fewer than 2 candidates need ``--allow-trivial``."""

from __future__ import annotations

import json

import pytest
from test_eval_support import E1, E2, E3, LookupEmbedder

from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import DataError

GOOD = {
    "qry_text": "q",
    "qry_img_path": "",
    "tgt_text": ["a", "b", "c"],
    "tgt_img_path": ["", "", ""],
}
TABLE = {"T:q": E1, "T:a": E2, "T:b": E1, "T:c": E3, "T:q2": E1}  # the good row misses

MALFORMED = {
    "string for list": ({"tgt_text": "a"}, "tgt_text", "a string where a list"),
    "null for path": ({"qry_img_path": None}, "qry_img_path", "null"),
    "null entry": ({"tgt_img_path": ["", None, ""]}, "tgt_img_path", "entry 1 is null"),
    "unequal lists": ({"tgt_img_path": ["", ""]}, "tgt_img_path", "2 entries but there are 3"),
    "one candidate": (
        {"tgt_text": ["a"], "tgt_img_path": [""]},
        "tgt_text",
        "1 candidate(s), fewer than 2",
    ),
}


def _write(folder, rows):
    (folder / "OK-VQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_row_stops_the_run_with_its_place(tmp_path, case):
    change, field, reason = MALFORMED[case]
    _write(tmp_path, [GOOD, {**GOOD, "qry_text": "q2", **change}])
    with pytest.raises(DataError) as caught:
        evaluate_mmeb(LookupEmbedder(TABLE), tmp_path, ["OK-VQA"])
    message = str(caught.value)
    assert message.startswith(f"OK-VQA: {tmp_path / 'OK-VQA.jsonl'}: row 1: field '{field}'")
    assert reason in message and "\n" not in message
    # skipped instead, the bad row counts as a miss: the score can only go down
    options = MMEBOptions(on_error="skip")
    result = evaluate_mmeb(LookupEmbedder(TABLE), tmp_path, ["OK-VQA"], options=options)
    scored = result.datasets["OK-VQA"]
    assert (scored.skipped_rows, scored.num_queries, scored.score) == (1, 2, 0.0)


def test_trivial_rows_need_allow_trivial(tmp_path):
    _write(tmp_path, [{**GOOD, "tgt_text": ["a"], "tgt_img_path": [""]}])
    options = MMEBOptions(allow_trivial=True)
    result = evaluate_mmeb(LookupEmbedder(TABLE), tmp_path, ["OK-VQA"], options=options)
    assert result.datasets["OK-VQA"].score == 1.0 and result.datasets["OK-VQA"].chance == 1.0


def test_inflating_inputs_of_the_audit_are_refused(tmp_path):
    """The audit's cases: one tgt_text string for every candidate (ImageNet-1K went from 62.5
    to 100.0) and a null query image (OK-VQA went from 75.0 to 87.5) are now errors."""
    _write(tmp_path, [{**GOOD, "tgt_text": "a"}])
    with pytest.raises(DataError, match="field 'tgt_text': a string where a list"):
        evaluate_mmeb(LookupEmbedder(TABLE), tmp_path, ["OK-VQA"])
    _write(tmp_path, [{**GOOD, "qry_img_path": None}])
    with pytest.raises(DataError, match="field 'qry_img_path': null"):
        evaluate_mmeb(LookupEmbedder(TABLE), tmp_path, ["OK-VQA"])
