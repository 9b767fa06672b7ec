"""benchmarks/semantic_hashing.py end to end on a two-topic corpus: one neighbourhood row per
(K, eigenvectors) a length can have, the row chosen on validation, both rules for ties, and the
printed table."""

from __future__ import annotations

from benchmarks import semantic_hashing
from tests.test_spectral import two_topic_corpus


def test_neighbourhood_rows_per_k_and_eigenvectors_and_the_choice_on_validation(tmp_path, one_thread, capsys):
    two_topic_corpus(tmp_path, n_per_topic=120)
    results = semantic_hashing.main(["--data", str(tmp_path), "--bits", "2", "4", "--epochs", "1",
                                     "--finetune-epochs", "2", "--neighbours", "5", "--neighbour-dimensions", "0",
                                     "2", "8", "--select"])
    assert results["neighbour_dimensions"] == [0, 2, 8] and results["ties"] == "random"  # the default
    plain, rotated = "semantic hashing + neighbourhood (K=5)", "semantic hashing + neighbourhood (K=5, 2 eigenvectors)"
    two, four = results["rows"][2], results["rows"][4]
    assert plain in two and rotated not in two  # 2 or 8 eigenvectors for 2 bits: one per bit, the plain row
    assert plain in four and rotated in four and not any("8 eigenvectors" in name for name in four)
    for row in (two, four):
        validation = row["validation_precision_at_100"]
        assert row["chosen_on_validation"] == max(validation, key=validation.get)
        assert row[semantic_hashing.CHOSEN] == row[row["chosen_on_validation"]]
        assert all(0 <= row[name] <= 1 for name in validation)
        other = row["by_other_ties_rule"]  # every test row again by the lower-index rule
        assert other["ties"] == "index" and set(validation) | {semantic_hashing.CHOSEN} < set(other) - {"ties"} <= set(row)
        assert other[semantic_hashing.CHOSEN] == other[row["chosen_on_validation"]]
        assert all(0 <= other[name] <= 1 for name in validation)
    assert four[f"epochs_kept ({rotated})"] in (0, 1, 2)
    table = capsys.readouterr().out.split("| bits |")[1]
    assert f" {rotated} |" in table and "| 2 |" in table and " – |" in table  # no such row at 2 bits
