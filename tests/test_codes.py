"""The codes' sparsity (Hoyer's measure) and the pictures train@ draws of what a family
learned: its first-layer filters and the histograms of its test codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from components.config import parse_section
from components.data import ingest, read_card
from components.errors import DulError
from components.evaluation.codes import codes_figure, hoyer_sparsity
from components.models.base import Filters
from components.models.made import MADE
from components.models.sparse_coding import SparseCoding
from pipelines import train


def test_hoyer_sparsity_is_one_for_a_single_unit_and_zero_for_equal_magnitudes():
    codes = np.array([[0, 0, 3.0, 0], [1, -1, 1, -1], [0, 0, 0, 0], [2, 2, 0, 0]])
    expected = [1.0, 0.0, 1.0, (2 - np.sqrt(2)) / (2 - 1)]
    assert hoyer_sparsity(codes) == pytest.approx(expected)
    assert hoyer_sparsity(5 * codes) == pytest.approx(expected)  # scale-free
    with pytest.raises(DulError, match=r"shape \(N, n >= 2\)"):
        hoyer_sparsity(np.ones((3, 1)))


def test_the_codes_figure_states_what_it_draws(tmp_path):
    codes = np.zeros((50, 10))
    codes[:, 0] = 1.0  # one active unit each: as sparse as can be
    figures = codes_figure(tmp_path / "codes.png", codes, "one unit")
    assert figures == {"code_sparsity": pytest.approx(1.0), "code_zero_fraction": pytest.approx(0.9)}
    assert Image.open(tmp_path / "codes.png").size[0] > 500


def test_train_draws_the_filters_and_the_codes_of_a_family_that_has_them(workdir, one_thread):
    """Sparse coding (an Encoder with Filters): a grid of its atoms, its codes' figure and
    sparsity in the metrics; MADE (neither): one-line notes in their place."""
    ingest("digits", workdir / "data/prepared")
    card = read_card(workdir / "data/prepared")
    protocol = parse_section("zoo", {"families": ["sparse_coding", "made"], "test_items": 30, "samples": 4})
    torch.manual_seed(0)
    coding = SparseCoding(64, atoms=12, lam=0.1, lasso_iterations=20)
    assert isinstance(coding, Filters) and coding.filters().shape == (64, 12)
    metrics = train._measure(coding, "sparse_coding", (1, 8, 8), protocol, card)
    folder = workdir / "reports/zoo/families/sparse_coding"
    assert 0 < metrics["code_sparsity"] <= 1 and 0 <= metrics["code_zero_fraction"] < 1
    sizes = {name: Image.open(folder / name).size for name in ("filters.png", "codes.png")}
    made = train._measure(MADE(64, (8,)), "made", (1, 8, 8), protocol, card)
    assert "code_sparsity" not in made and not isinstance(MADE(64, (8,)), Filters)
    notes = {name: Image.open(workdir / "reports/zoo/families/made" / name).size for name in ("filters.png", "codes.png")}
    assert all(sizes[name][0] * sizes[name][1] > notes[name][0] * notes[name][1] for name in sizes)  # pictures, not notes
    json.dumps(metrics)  # the metrics stay JSON
