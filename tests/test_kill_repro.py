"""Kill `dvc repro` at random points and rerun: outputs byte-identical to a clean run,
no epoch trained twice (benchmarks/kill_repro.py; the full ten trials: run the script)."""

import pytest

from benchmarks import kill_repro


@pytest.mark.slow
def test_killed_runs_end_byte_identical_to_a_clean_run(tmp_path):
    assert kill_repro.main(["--trials", "2", "--seed", "1", "--work", str(tmp_path)]) == 0
