"""The report's front page: the evaluated volumes' errors and AP beside the paper's Table 1."""

import json

from docutils.core import publish_parts

from unetseg import headline


def test_front_page_table_has_each_scored_volume_and_the_paper(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val/metrics.json").write_text(
        json.dumps({"pixel_error": 0.05, "rand_error": 0.1, "warping_error": 0.001})
    )
    (tmp_path / "val/instance_metrics.json").write_text(json.dumps({"ap50": 0.8, "mean_ap": 0.5}))
    rows = headline.volume_rows(tmp_path, {"val": "validate", "not_scored_yet": "test"})
    assert rows == [["val", "training (it chose the model)", "0.0500", "0.1000", "0.001000",
                     "0.800", "0.500"]]  # fmt: skip
    template = tmp_path / "workflow.rst"
    template.write_text("unetseg run.\n")
    page = headline.write_front_page(template, tmp_path / "report/front.rst", rows)
    html = publish_parts(page.read_text(), writer_name="html")["html_body"]
    assert "<table" in html and "val" in html and "0.0382" in html and "0.800" in html
    assert "held out from" in html and "a test volume chose nothing" in html
    written = page.stat().st_mtime_ns
    headline.write_front_page(template, page, rows)  # unchanged: not rewritten
    assert page.stat().st_mtime_ns == written
    assert headline.headline_rst([]) == ""


SUMMARY = {  # unetseg.choice's summary of a run validated on two slices
    "keep_by": "rand_error", "slices": ["val z0", "val z1"], "validations": 3,
    "kept": {"step": 20, "pixel_error": 0.2, "rand_error": 0.2},
    "leave_one_slice_out": {"steps": [20, 10], "pixel_error": 0.35, "rand_error": 0.35},
    "flattery": {"pixel_error": 0.15, "rand_error": 0.15},
}  # fmt: skip


def test_the_front_page_says_what_the_kept_validation_is_worth_on_slices_that_chose_nothing(
    tmp_path,
):
    assert headline.training_choice(tmp_path) == ""  # before training
    (tmp_path / "model").mkdir()
    (tmp_path / "model/validation.json").write_text(json.dumps(SUMMARY))
    choice = headline.training_choice(tmp_path)
    assert choice == (
        "Training kept step 20: validation Rand error 0.2000, pixel error 0.2000 on the 2 slices "
        "that chose it; each slice scored by the network the other slices chose: Rand error "
        "0.3500, pixel error 0.3500."
    )
    rows = [["val", "training (it chose the model)", "0.2", "0.2", "0.001", "–", "–"]]
    html = publish_parts(headline.headline_rst(rows, choice), writer_name="html")["html_body"]
    assert "</table>" in html and "<p>Training kept step 20: validation Rand error 0.2000" in html


def test_the_choice_is_described_with_one_slice_and_without_validation():
    one = {**SUMMARY, "slices": ["val z0"], "leave_one_slice_out": None}
    assert headline.choice_sentence(one).endswith(
        "on the slice that chose it (one slice: no leave-one-slice-out estimate)"
    )
    by_ap50 = {**SUMMARY, "kept": {**SUMMARY["kept"], "ap50": 0.81},
               "leave_one_slice_out": {**SUMMARY["leave_one_slice_out"], "ap50": 0.765}}  # fmt: skip
    assert headline.choice_sentence(by_ap50) == (
        "kept step 20: validation Rand error 0.2000, pixel error 0.2000, AP50 0.810 on the 2 "
        "slices that chose it; each slice scored by the network the other slices chose: Rand "
        "error 0.3500, pixel error 0.3500, AP50 0.765"
    )
    assert headline.choice_sentence({**SUMMARY, "slices": [], "kept": None}) == (
        "no validate volumes: the last network is kept"
    )
