"""The search index folder and `dul search` on a hand-made corpus of three topics."""

import json

import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.feature_extraction.text import TfidfTransformer

from components.cli import main as dul
from components.data.text import count_vectors, tokenize, write_bow_split
from components.errors import DulError
from components.io import save_torch, write_json
from components.models.autoencoder import DeepAutoencoder
from components.retrieval import write_index
from components.retrieval.codes import binarize
from components.retrieval.documents import load_search_index, smooth_idf, tfidf_rows, write_search_index
from components.retrieval.engine import candidates, query_inputs, search_item, search_text
from components.retrieval.hamming import hash_ball
from components.retrieval.search_eval import compare_search, compare_title_queries
from pipelines import index as index_stage
from tests.conftest import write_params

TOPICS = {
    "sci.space": "rocket orbit shuttle launch planet moon nasa satellite",
    "rec.hockey": "puck goalie skate playoff hockey team season score",
    "rec.cooking": "recipe flour oven butter sugar bake dough salt",
}
VOCABULARY = sorted(w for words in TOPICS.values() for w in words.split())  # 24 words


def corpus(per_topic: int = 10, seed: int = 0):
    """ids, titles, label, split and text of each document; ten per topic, 6/2/2 train/validation/test."""
    rng = np.random.default_rng(seed)
    docs = []
    for label, (topic, words) in enumerate(TOPICS.items()):
        for j in range(per_topic):
            text = " ".join(rng.choice(words.split(), size=12))
            split = "train" if j < 6 else "validation" if j < 8 else "test"
            docs.append((f"{topic}/{1000 + j}", f"{topic} post {j}\nbody", label, split, text))
    return docs


def build(folder, n_bits: int = 8, kind: str = "bow", seed: int = 0, vocabulary=VOCABULARY, titles=None):
    """Write a search folder with a random-weight encoder; returns the folder. ``titles``: one per
    document of ``corpus()`` (default: its own, "<topic> post <j>")."""
    torch.manual_seed(seed)
    model = DeepAutoencoder((len(vocabulary), 16, n_bits), "linear", "poisson")
    docs = corpus()
    counts = count_vectors([tokenize(d[4]) for d in docs], vocabulary)
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(counts.toarray().astype(np.float32))).numpy()
    thresholds = np.median(codes[:18], axis=0).astype(np.float32)
    text = {"counts": counts, "vocabulary": vocabulary} if kind == "bow" else {}
    write_search_index(folder, model=model, thresholds=thresholds, bits=codes > thresholds,
                       ids=[d[0] for d in docs], titles=titles or [d[1] for d in docs], labels=[d[2] for d in docs],
                       splits=[d[3] for d in docs], meta={"dataset": "toy", "kind": kind,
                                                          "label_names": list(TOPICS)}, **text)
    return folder


@pytest.fixture
def folder(tmp_path):
    return build(tmp_path / "search")


def test_free_text_search_returns_documents_of_the_topic(folder):
    index = load_search_index(folder)
    result = search_text(index, "The rocket reached orbit; NASA's shuttle launch!", k=5, radius=8)
    assert [h["rank"] for h in result.hits] == [1, 2, 3, 4, 5]
    assert {h["label"] for h in result.hits} == {"sci.space"}  # radius 8 = every item, TF-IDF decides
    assert all(h["id"].startswith("sci.space/") and h["title"].startswith("sci.space post") for h in result.hits)
    assert result.words == ["launch", "nasa", "orbit", "rocket", "shuttle"] and result.shortlist == 30
    assert 0 < result.seconds < 5


def test_rerank_orders_the_shortlist_by_tfidf_cosine(folder):
    index = load_search_index(folder)
    query = "puck goalie oven"
    result = search_text(index, query, k=30, radius=2)
    counts = count_vectors([tokenize(d[4]) for d in corpus()], VOCABULARY)
    train = [d[3] == "train" for d in corpus()]
    sklearn = TfidfTransformer().fit(counts[np.flatnonzero(train)])
    vectors, q = sklearn.transform(counts), sklearn.transform(count_vectors([tokenize(query)], VOCABULARY))
    cosine = (vectors @ q.T).toarray().ravel()
    scores = [h["score"] for h in result.hits]
    np.testing.assert_allclose(scores, cosine[[h["row"] for h in result.hits]], rtol=1e-5)
    assert scores == sorted(scores, reverse=True)
    x = torch.from_numpy(count_vectors([tokenize(query)], VOCABULARY).toarray().astype(np.float32))
    bits = index.model.encode(x).detach().numpy() > index.thresholds
    rows, _, _ = candidates(index, bits, 30, 2, None)  # the shortlist: the ball, plus nearest codes if small
    assert sorted(h["row"] for h in result.hits) == sorted(rows.tolist())


def test_a_small_ball_is_grown_to_the_shortlist_by_the_nearest_codes(folder):
    index = load_search_index(folder)
    result = search_item(index, 0, k=2, radius=0, shortlist=12)
    ball = search_item(index, 0, k=2, radius=0, shortlist=2)
    assert result.shortlist == 12 and ball.shortlist < 12, (result.method, ball.method)
    assert "nearest outside it" in result.method
    words = index.hash.words  # (N, 1) uint64: 8-bit codes
    rows, distances, _ = candidates(index, words[:1], 2, 0, 12, exclude=0)
    assert len(rows) == 12 and 0 not in rows
    assert list(distances) == sorted(distances)  # the ball (distance 0) first, then the nearest outside it
    others = np.unpackbits((words[1:] ^ words[0]).view(np.uint8), axis=1).sum(axis=1)
    np.testing.assert_array_equal(distances, np.sort(others)[:12])  # the 12 nearest of the 29 others
    assert search_item(index, 0, k=2, radius=0).shortlist == 20  # the default: 10 k


def test_the_unordered_shortlist_is_the_ordered_one(folder, monkeypatch):
    """ordered=False (re-ranking) skips the ball lookup when the nearest codes show the ball is small:
    the same rows, distances and method, in some order."""
    from components.retrieval import engine

    index, lookups = load_search_index(folder), []
    monkeypatch.setattr(engine, "hash_ball", lambda *a: lookups.append(1) or hash_ball(*a))
    skipped = 0
    for radius, shortlist in [(0, 12), (1, 5), (2, 20), (2, 29), (3, 4), (8, 10)]:
        for row in range(0, 30, 3):
            words = index.hash.words[row : row + 1]
            rows, distances, method = candidates(index, words, 2, radius, shortlist, exclude=row)
            before = len(lookups)
            got = candidates(index, words, 2, radius, shortlist, exclude=row, ordered=False)
            skipped += len(lookups) == before
            assert got[2] == method and sorted(zip(got[0], got[1])) == sorted(zip(rows, distances))
    assert 0 < skipped < 60  # both ways were taken


@pytest.mark.parametrize("n_bits", [1, 8, 30, 32, 40, 64, 100, 128])
def test_a_querys_words_are_laid_out_as_pack_words_lays_them(n_bits):
    from components.retrieval.codes import pack_words
    from components.retrieval.engine import _pack_query

    bits = np.random.default_rng(n_bits).random((1, n_bits)) < 0.5
    np.testing.assert_array_equal(_pack_query(bits), pack_words(bits))
    assert _pack_query(bits).dtype == np.uint64


def test_no_rerank_ranks_by_hamming_distance(folder):
    result = search_text(load_search_index(folder), "flour sugar", k=10, rerank=False)
    distances = [h["distance"] for h in result.hits]
    assert distances == sorted(distances) and all(h["score"] is None for h in result.hits)


def test_doc_id_and_row_find_the_same_neighbours_without_the_query(folder):
    index = load_search_index(folder)
    by_id = search_item(index, "rec.hockey/1003", k=6)
    by_row = search_item(index, 13, k=6)
    assert [h["row"] for h in by_id.hits] == [h["row"] for h in by_row.hits]
    assert 13 not in [h["row"] for h in by_id.hits] and len(by_id.hits) == 6
    assert by_id.hits[0]["score"] <= 1 + 1e-6


def test_long_codes_use_the_k_nearest_codes(tmp_path):
    index = load_search_index(build(tmp_path / "long", n_bits=40))
    assert index.hash.address is None and index.hash.mih is not None
    result = search_text(index, "oven butter", k=3)
    assert len(result.hits) == 3 and result.shortlist == 30 and "nearest codes" in result.method
    with pytest.raises(DulError, match="--radius needs codes of up to 32 bits"):
        search_text(index, "oven butter", k=3, radius=2)


@pytest.mark.parametrize("query, message", [
    ("", "the query is empty"),
    ("   ", "the query is empty"),
    ("the and of 42 !!", "has no searchable words"),
    ("zebra xylophone", "none of the query's words are in the 24-word vocabulary; try other words"),
])
def test_bad_queries_are_errors(folder, query, message):
    with pytest.raises(DulError, match=message):
        search_text(load_search_index(folder), query)


def test_unknown_doc_id_suggests_close_ids(folder):
    with pytest.raises(DulError, match=r"no document has id 'sci.space/100x'.*did you mean sci.space/100"):
        search_item(load_search_index(folder), "sci.space/100x")
    with pytest.raises(DulError, match="choose a row from 0 to 29"):
        search_item(load_search_index(folder), 30)


def test_image_index_answers_items_not_text(tmp_path):
    index = load_search_index(build(tmp_path / "images", kind="images"))
    assert len(search_item(index, 0, k=4).hits) == 4 and index.tfidf is None
    with pytest.raises(DulError, match="holds toy images, not documents: search it by item with --doc"):
        search_text(index, "rocket")


def test_encoder_of_another_code_length_or_vocabulary_is_an_error(folder, tmp_path):
    other = build(tmp_path / "other", n_bits=6)
    (folder / "encoder.pt").write_bytes((other / "encoder.pt").read_bytes())
    with pytest.raises(DulError, match="encoder.pt makes 6-bit codes but the index holds 8-bit codes"):
        load_search_index(folder)
    wider = build(tmp_path / "wider", vocabulary=[*VOCABULARY, "extra"])
    (folder / "encoder.pt").write_bytes((wider / "encoder.pt").read_bytes())
    with pytest.raises(DulError, match="encoder.pt reads 25 words but the index's vocabulary has 24"):
        load_search_index(folder)


@pytest.mark.parametrize("name", ["idf.npy", "tfidf.data.npy", "encoder.pt", "titles.npy", "vocabulary.json",
                                  "meta.json", "hash/words.npy"])
def test_missing_or_truncated_file_is_named(folder, name):
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DulError, match=rf"{name}.*(truncated|damaged|unreadable).*dvc repro index"):
        load_search_index(folder)
    path.unlink()
    with pytest.raises(DulError, match=rf"{name}.*(missing|does not exist).*dvc repro index"):
        load_search_index(folder)


def test_index_loads_without_pickle(folder, monkeypatch):
    real_np_load, real_torch_load = np.load, torch.load
    calls = []

    def np_load(*args, **kwargs):
        assert kwargs.get("allow_pickle") is False
        calls.append(args[0])
        return real_np_load(*args, **kwargs)

    def torch_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True
        calls.append(args[0])
        return real_torch_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", np_load)
    monkeypatch.setattr(torch, "load", torch_load)
    index = load_search_index(folder)
    npy = sorted(p for p in folder.rglob("*.npy"))
    assert set(npy) <= set(calls) and folder / "encoder.pt" in calls and len(npy) == 15
    assert all(np.asarray(a).dtype != object for a in (index.ids, index.titles, index.splits))
    assert not list(folder.parent.glob(".search.*"))  # the atomic write left no temporary behind


def test_tfidf_matches_scikit_learn():
    counts = scipy.sparse.csr_matrix(np.random.default_rng(1).poisson(0.7, size=(20, 9)))
    expected = TfidfTransformer().fit(counts[:12]).transform(counts).toarray()
    np.testing.assert_allclose(tfidf_rows(counts, smooth_idf(counts[:12])).toarray(), expected, rtol=1e-5, atol=1e-7)


def test_compare_search_reports_precision_and_time(folder):
    index = load_search_index(folder)
    test_rows = np.flatnonzero(np.asarray(index.splits) == "test")
    metrics = compare_search(index, test_rows, k=5)
    assert metrics["search/n_queries"] == 6 and metrics["search/precision_at_5/tfidf_all"] == 1.0
    for method in ("hash_rerank", "hash_only", "tfidf_all"):
        assert 0 <= metrics[f"search/precision_at_5/{method}"] <= 1 and metrics[f"search/query_ms/{method}"] > 0
    assert metrics["search/precision_at_5/hash_rerank"] >= metrics["search/precision_at_5/hash_only"]
    assert 5 <= metrics["search/shortlist_mean"] <= 29


def test_a_short_query_is_encoded_as_a_document_of_the_median_training_length(folder):
    """Every toy document has 12 words: a two-word query is encoded as 12 words in its proportions,
    a longer one as it is, and the search uses those codes."""
    index = load_search_index(folder)
    assert index.meta["query_length"] == 12.0
    short = count_vectors([["rocket", "orbit"]], index.vocabulary).toarray().astype(np.float32)
    assert query_inputs(index, short).sum() == pytest.approx(12.0)
    np.testing.assert_allclose(query_inputs(index, short), 6 * short)
    long = count_vectors([["rocket"] * 10 + ["orbit"] * 10], index.vocabulary).toarray().astype(np.float32)
    np.testing.assert_array_equal(query_inputs(index, long), long)
    def bits_of(counts):
        with torch.no_grad():
            return binarize(index.model.encode(torch.from_numpy(counts.astype(np.float32))).numpy(), index.thresholds)

    stored = bits_of(count_vectors([tokenize(d[4]) for d in corpus()], index.vocabulary).toarray())
    scaled, raw = bits_of(6 * short), bits_of(short)
    assert (scaled != raw).any()  # else the test could not tell them apart
    found = search_text(index, "rocket orbit", k=30, rerank=False)
    assert [h["distance"] for h in found.hits] == [int((stored[h["row"]] != scaled[0]).sum()) for h in found.hits]


def test_title_queries_are_scored_like_document_queries(tmp_path):
    """Titles of two topic words each; a title with no vocabulary word is counted, not searched."""
    def title(doc):
        return "nothing known here" if doc[0].endswith("1009") else " ".join(doc[4].split()[:2])

    index = load_search_index(build(tmp_path / "search", titles=[title(d) for d in corpus()]))
    test_rows = np.flatnonzero(np.asarray(index.splits) == "test")
    metrics = compare_title_queries(index, test_rows, k=3)
    assert metrics["search/title/n_queries"] == 3 and metrics["search/title/n_unsearchable"] == 3
    assert metrics["search/title/precision_at_3/tfidf_all"] == 1.0  # topic words are unique to their topic
    for method in ("hash_rerank", "hash_only", "tfidf_all"):
        assert 0 <= metrics[f"search/title/precision_at_3/{method}"] <= 1
        assert metrics[f"search/title/query_ms/{method}"] > 0
    alone = compare_title_queries(index, test_rows, k=3, label_sets=np.eye(len(index), dtype=bool))
    assert alone["search/title/precision_at_3/tfidf_all"] == 0.0  # the query's own document is left out


def test_compare_search_counts_any_shared_label_when_given_label_sets(folder):
    """Multi-label relevance: give every item a second, common label and every result is a hit;
    give each item only a label of its own and none is."""
    index = load_search_index(folder)
    test_rows = np.flatnonzero(np.asarray(index.splits) == "test")
    n, n_labels = len(index), int(np.max(index.labels)) + 1
    shared = np.zeros((n, n_labels + 1), dtype=bool)
    shared[np.arange(n), np.asarray(index.labels)] = True
    shared[:, n_labels] = True  # one topic every document has
    everything = compare_search(index, test_rows, k=5, label_sets=shared)
    alone = compare_search(index, test_rows, k=5, label_sets=np.eye(n, dtype=bool))
    for method in ("hash_rerank", "hash_only", "tfidf_all"):
        assert everything[f"search/precision_at_5/{method}"] == 1.0 and alone[f"search/precision_at_5/{method}"] == 0.0


def corrupt(path, change):
    """Rewrite the .npy at ``path`` with ``change`` applied: the same shape and dtype, so meta.json still agrees."""
    array = np.load(path, allow_pickle=False)
    change(array)
    np.save(path, array, allow_pickle=False)


def _first_slot_past_the_keys(slots):
    slots[np.flatnonzero(slots != np.uint64(2**64 - 1))[0]] |= np.uint64(0xFFFF)


def _first_slot_holds_another_key(slots):
    slots[np.flatnonzero(slots != np.uint64(2**64 - 1))[0]] ^= np.uint64(1 << 32)


@pytest.mark.parametrize("n_bits, name, change, problem", [
    (8, "hash/address.docs.npy", lambda a: a.__setitem__(3, 30), "document id 30 is beyond the 30 codes"),
    (8, "hash/address.docs.npy", lambda a: a.__setitem__(0, 2**32 - 1), "beyond the 30 codes"),
    (8, "hash/address.offsets.npy", lambda a: a.__setitem__(1, 29), "offsets do not rise from 0"),
    (8, "hash/address.keys.npy", lambda a: a.__setitem__(slice(None), a[::-1].copy()), "keys are not ascending"),
    (8, "hash/address.keys.npy", lambda a: a.__setitem__(-1, 256), "distinct 8-bit keys"),
    (8, "hash/address.slots.npy", _first_slot_past_the_keys, "slots do not hold the"),
    (8, "hash/address.slots.npy", _first_slot_holds_another_key, "slots hold keys at positions of other keys"),
    (8, "hash/address.filter.npy", lambda a: a.__setitem__(slice(None), 0), "filter rules out keys"),
    (4, "hash/address.docs.npy", lambda a: a.__setitem__(-1, 31), "document id 31 is beyond the 30 codes"),
    (4, "hash/address.offsets.npy", lambda a: a.__setitem__(0, 1), "offsets do not rise from 0"),
    (40, "hash/mih0.docs.npy", lambda a: a.__setitem__(0, 1000), "document id 1000 is beyond the 30 codes"),
    (8, "hash/words.npy", lambda a: a.__setitem__((0, 0), a[0, 0] | np.uint64(1)), "bits set beyond the 8-bit codes"),
    (8, "tfidf.indices.npy", lambda a: a.__setitem__(0, 24), "holds words outside 0..23"),
    (8, "tfidf.indptr.npy", lambda a: a.__setitem__(1, a[2] + 1), "does not rise from 0"),
])
def test_out_of_range_rows_are_a_dul_error_naming_the_file(tmp_path, n_bits, name, change, problem):
    folder = build(tmp_path / "index", n_bits=n_bits)
    corrupt(folder / name, change)
    with pytest.raises(DulError) as failure:
        load_search_index(folder)
    message = str(failure.value)
    assert message.startswith(f"{folder / name} ") and problem in message and "\n" not in message
    assert message.endswith("rebuild it with `dvc repro index`")


def test_cli_refuses_a_damaged_address_table_in_one_line(folder, capsys):
    corrupt(folder / "hash" / "address.docs.npy", lambda a: a.__setitem__(0, 99))
    assert dul(["search", "--index", str(folder), "rocket orbit", "--radius", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "address.docs.npy is out of range (document id 99" in err and "Traceback" not in err


def test_cli_searches_text_and_docs(folder, capsys):
    assert dul(["search", "--index", str(folder), "rocket orbit", "-k", "3", "--radius", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "query: 'rocket orbit' -> words orbit, rocket"
    assert out[2].split() == ["rank", "dist", "score", "label", "id", "title"]
    assert len(out) == 7 and all("sci.space/" in line for line in out[3:6]) and out[-1].startswith("3 results in ")
    assert dul(["search", "--index", str(folder), "--doc", "rec.cooking/1001", "-k", "2", "--no-rerank"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("query: rec.cooking/1001 (row 21, train, rec.cooking)") and " - " in out


def test_cli_keeps_the_codes_file_form(tmp_path, capsys):
    bits = np.random.default_rng(0).random((12, 8)) > 0.5
    write_index(tmp_path / "codes.npz", bits=bits, labels=np.arange(12) % 3, splits=["train"] * 12,
                item_ids=np.arange(12), thresholds=np.zeros(8), meta={})
    assert dul(["search", "--index", str(tmp_path / "codes.npz"), "--item", "0", "-k", "3"]) == 0
    assert capsys.readouterr().out.startswith("query: item 0")


@pytest.mark.parametrize("args, message", [
    (["", "-k", "3"], "the query is empty"),
    (["zebra"], "none of the query's words are in the 24-word vocabulary; try other words"),
    (["--doc", "rec.hocky/1003"], "did you mean rec.hockey/1003"),
    ([], "give exactly one of a query TEXT, --doc ID or --item N"),
    (["rocket", "--item", "3"], "got TEXT and --item"),
    (["rocket", "-k", "0"], "k = 0 is not valid"),
])
def test_cli_errors_are_one_line_exit_2(folder, capsys, args, message):
    assert dul(["search", "--index", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_names_a_missing_index(tmp_path, capsys):
    assert dul(["search", "--index", str(tmp_path / "nowhere"), "rocket"]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "dvc repro index" in err
    assert dul(["search", "--index", str(tmp_path / "codes.npz"), "--doc", "x"]) == 2
    assert "answers --item N" in capsys.readouterr().err


def index_stage_inputs(workdir, seed: int = 0) -> None:
    """The index stage's inputs in ``workdir``: the corpus as prepared data, a random-weight model, params."""
    docs = corpus()
    for split in ("train", "validation", "test"):
        part = [d for d in docs if d[3] == split]
        counts = count_vectors([tokenize(d[4]) for d in part], VOCABULARY)
        write_bow_split(workdir / f"data/prepared/{split}.parquet", [d[0] for d in part],
                        np.array([d[2] for d in part]), counts, [d[1] for d in part], VOCABULARY)
    write_json(workdir / "data/prepared/card.json", {"dataset": "toy", "kind": "bow", "n_labels": 3,
                                                      "label_names": list(TOPICS)})
    torch.manual_seed(seed)
    save_torch(workdir / "models/autoencoder.pt", DeepAutoencoder((24, 16, 8), "linear", "poisson").to_checkpoint())
    write_params(workdir)


def test_index_stage_writes_the_search_folder_and_metrics(workdir, capsys):
    index_stage_inputs(workdir)
    assert index_stage.main(["--params", str(workdir / "params.yaml")]) == 0
    index = load_search_index(workdir / "index/search")
    assert len(index) == 30 and list(index.ids[:2]) == ["sci.space/1000", "sci.space/1001"]
    assert index.vocabulary == VOCABULARY and index.meta["kind"] == "bow"
    metrics = json.loads((workdir / "reports/index/metrics.json").read_text())
    assert metrics["search/n_queries"] == 6 and metrics["search/precision_at_5/tfidf_all"] == 1.0
    assert {f"search/{m}/{n}" for m in ("precision_at_5", "query_ms") for n in ("hash_rerank", "hash_only",
            "tfidf_all")} | {"search/shortlist_mean", "precision_at_5", "search/title/n_queries"} <= set(metrics)
    capsys.readouterr()
    assert dul(["search", "--index", str(workdir / "index/search"), "bake flour", "-k", "2", "--radius", "8"]) == 0
    assert capsys.readouterr().out.count("rec.cooking/") == 2
