from test_rollback import ISBI_CONSTANT, ISBI_SEED_0, ISBI_SEED_1

from bench.train import judged_rows
from unetseg.train import LOG_COLUMNS


def write_log(path, rows):
    lines = ["\t".join(LOG_COLUMNS)]
    for step, (pixel, rand, wrong, loss) in zip(range(250, 1500, 250), rows, strict=True):
        values = {"step": step, "loss": loss, "pixel_error": pixel, "rand_error": rand,
                  "wrong_fraction": wrong}  # fmt: skip
        lines.append("\t".join(str(values.get(column, "")) for column in LOG_COLUMNS))
    path.write_text("\n".join(lines) + "\n")


def test_the_guard_judges_each_logged_validation_up_to_its_first_rollback(tmp_path):
    write_log(tmp_path / "seed0.tsv", ISBI_SEED_0)
    write_log(tmp_path / "seed1.tsv", ISBI_SEED_1)
    seed0 = judged_rows(tmp_path / "seed0.tsv", ISBI_CONSTANT)
    seed1 = judged_rows(tmp_path / "seed1.tsv", ISBI_CONSTANT)
    assert [row["guard"] for row in seed0] == ["fine", "watched", "fine", "fine", "fine"]
    assert [row["guard"] for row in seed1] == ["fine", "watched", "rollback"]
    assert seed0[1] == {"step": 500, "pixel_error": 0.11788, "rand_error": 0.70907,
                        "wrong_fraction": 0.2109, "loss": 1.241, "guard": "watched"}  # fmt: skip
