"""finetune.keep: the retrieval score that picks the fine-tuning epoch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from components.data import ingest, read_split
from components.data.text import write_bow_split
from components.training import selection


class CodesOf:
    """A stand-in net whose codes are a fixed function of the rows."""

    def __init__(self, fn, code_units: str):
        self.fn, self.code_units = fn, code_units
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.weight])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits") / "prepared"
    ingest("digits", folder)
    return folder


def test_head_rows_are_the_first_rows_of_read_split(digits):
    X, y = read_split(digits, "train")
    head, labels = selection.head_rows(digits, "train", 50)
    assert head.dtype == torch.float32 and head.shape == (50, X.shape[1])
    assert np.array_equal(head.numpy(), X[:50]) and np.array_equal(labels, y[:50])
    whole, _ = selection.head_rows(digits, "validation", 10**6)
    assert len(whole) == len(read_split(digits, "validation")[1])


def test_head_rows_of_a_word_count_split(tmp_path):
    counts = scipy.sparse.csr_matrix(np.array([[0, 2, 1], [3, 0, 0], [1, 1, 1]], dtype=np.int32))
    write_bow_split(tmp_path / "train.parquet", ["a", "b", "c"], np.array([0, 1, 0]), counts,
                    ["t"] * 3, ["x", "y", "z"])
    head, labels = selection.head_rows(tmp_path, "train", 2)
    assert head.tolist() == [[0, 2, 1], [3, 0, 0]] and labels.tolist() == [0, 1]


def test_codes_that_name_the_label_score_one_and_random_codes_score_chance(digits):
    score = selection.RetrievalScore(digits)
    labels_of = {tuple(row.tolist()): int(label) for rows, labels in
                 ((score.database, score.database_labels.argmax(1)), (score.queries, score.query_labels.argmax(1)))
                 for row, label in zip(rows, labels)}

    def label_bits(x):  # 4 bits: the label in binary, then noise-free
        labels = torch.tensor([labels_of[tuple(row.tolist())] for row in x])
        return ((labels[:, None] >> torch.arange(4)) & 1).float()

    assert score(CodesOf(label_bits, "binary")) == pytest.approx(1.0)
    assert score(CodesOf(lambda x: torch.nn.functional.one_hot(
        torch.tensor([labels_of[tuple(r.tolist())] for r in x]), 10).float(), "linear")) == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(0)
    chance = score(CodesOf(lambda x: torch.rand(len(x), 16, generator=generator), "binary"))
    assert 0.05 < chance < 0.2  # 10 balanced classes


def test_pixels_as_linear_codes_score_like_the_cosine_baseline(digits):
    from components.retrieval.evaluation import retrieval_curves

    score = selection.RetrievalScore(digits)
    expected = retrieval_curves(score.queries.numpy(), score.database.numpy(), score.query_labels,
                                score.database_labels, "cosine", np.array([100]))["precision"][0]
    assert score(CodesOf(lambda x: x, "linear")) == pytest.approx(expected)
    assert 0.5 < expected < 1.0


def model_of(state: dict) -> dict:
    """The net's weights in a fine-tuning checkpoint: the unit's, or the finished phase's."""
    return state["unit"]["model"] if state["unit"] is not None else state["done"][0]["model"]


@pytest.mark.parametrize("keep", ["last", "best_precision"])
def test_finetune_keeps_the_epoch_whose_codes_retrieve_best(workdir, in_process, one_thread, keep):
    from components.config import parse_section
    from components.io import save_torch
    from components.models.autoencoder import DeepAutoencoder
    from components.training import finetune, pretrain

    data = workdir / "data/prepared"
    ingest("digits", data)
    stack = pretrain.pretrain_stack(data, parse_section("pretrain", {
        "hidden": [32, 4], "code_units": "binary", "epochs": 1, "max_failures": 0}), key="s")
    save_torch(workdir / "stack.pt", {"layers": stack["layers"]})
    in_process.clear()
    # a large rate: epochs differ a lot, so the best one is rarely the last
    tuned = finetune.finetune_autoencoder(data, workdir / "stack.pt", parse_section("finetune", {
        "epochs": 4, "lr": 0.05, "keep": keep, "max_failures": 0}), key=keep)
    history = tuned["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    if keep == "last":
        assert tuned["kept"] is None and "valid_precision_at_100" not in history[-1]
        assert all(torch.equal(tuned["checkpoint"]["state_dict"][k], v) for k, v in model_of(in_process[-1]).items())
        return
    score = selection.RetrievalScore(data)
    pretrained = DeepAutoencoder.from_checkpoint({"params": in_process[-1]["done"][0]["params"],
                                                  "state_dict": in_process[0]["unit"]["best"]["model"]})
    scores = [score(finetune.unroll(torch.load(workdir / "stack.pt", weights_only=True)).eval())] + \
        [row["valid_precision_at_100"] for row in history]
    assert tuned["kept"]["epoch"] == int(np.argmax(scores))  # the first of the best, epoch 0 included
    assert tuned["kept"]["precision_at_100"] == pytest.approx(max(scores))
    assert tuned["kept"]["pretrained_precision_at_100"] == pytest.approx(scores[0])
    from pipelines.finetune import kept_metrics, retrieval_verdict

    metrics = kept_metrics(history, tuned["kept"])
    assert metrics["finetune_precision_gain"] == pytest.approx(max(scores) - scores[0])
    verdict = retrieval_verdict(metrics)
    assert ("did not improve retrieval" in verdict) == (tuned["kept"]["epoch"] == 0)
    kept = DeepAutoencoder.from_checkpoint(tuned["checkpoint"]).eval()
    assert score(kept) == pytest.approx(max(scores))  # the saved net is the kept epoch's
    epoch = tuned["kept"]["epoch"]
    expected = pretrained.state_dict() if epoch == 0 else model_of(in_process[epoch - 1])
    assert all(torch.equal(tuned["checkpoint"]["state_dict"][k], v) for k, v in expected.items())


def test_the_verdict_says_plainly_whether_fine_tuning_helped_retrieval():
    from pipelines.finetune import retrieval_verdict

    same = {"kept_epoch": 0, "valid_precision_at_100": 0.4, "pretrained_valid_precision_at_100": 0.4}
    assert retrieval_verdict(same).startswith("fine-tuning did not improve retrieval") and "epochs: 0" in \
        retrieval_verdict(same)
    better = {"kept_epoch": 3, "valid_precision_at_100": 0.45, "pretrained_valid_precision_at_100": 0.4}
    assert retrieval_verdict(better) == ("fine-tuning raised validation precision@100 from 0.400 (the pretrained "
                                         "net) to 0.450 (epoch 3, kept)")
