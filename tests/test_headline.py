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
