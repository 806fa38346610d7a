"""BENCHMARKS.md's summary: goals checked as written, and the table current with the records."""

from bench import summary


def test_verdicts_of_goals_with_numbers():
    assert summary.verdict(2.19, "< 3") == "yes"
    assert summary.verdict(0.784, ">= 0.9") == "**no**"
    assert summary.verdict(0, "0 with the default") == "yes"
    assert summary.verdict(8.39, "~8") == "yes"
    assert summary.verdict(302, "flat in plane size") == ""


def test_summary_table_is_current_with_the_records():
    """`python -m bench summary` after recording figures keeps the front table true."""
    rows = summary.newest_with_goals(summary.RESULTS.read_text().splitlines())
    assert summary.table(rows) in summary.BENCHMARKS_MD.read_text()
