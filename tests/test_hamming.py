"""The semantic-hashing engine: scan, address space and multi-index hashing
against brute force, and the index folder on disk."""

import json

import numpy as np
import pytest

from components.errors import DulError
from components.retrieval.address import (
    EMPTY,
    _may_hold,
    address_keys,
    ball_lookup,
    build_address_table,
    lookup_ranges,
    table_problem,
)
from components.retrieval.codes import pack_bits, pack_words, packed_from_words
from components.retrieval.hamming import (
    HASH_FORMAT,
    build_hash_index,
    hash_ball,
    hash_knn,
    index_stats,
    knn_search,
    load_hash_index,
    write_hash_index,
)
from components.retrieval.mih import build_multi_index, mih_knn, substring_keys


def codes_with_ties(rng, n, n_bits, flip=0.1, n_centres=8):
    """Clustered bits with exact duplicates, so many distances tie."""
    centres = rng.random((n_centres, n_bits)) < 0.5
    bits = centres[rng.integers(0, n_centres, n)] ^ (rng.random((n, n_bits)) < flip)
    bits[n // 2 : n // 2 + n // 5] = bits[: n // 5]  # duplicates
    return bits


def brute_force(query_bits, bits, k):
    """Distances by comparing bools; stable argsort = (distance, index) order."""
    dist = (query_bits[:, None, :] != bits[None, :, :]).sum(axis=2)  # (Q, N)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1), dist


@pytest.mark.parametrize("n_bits", [7, 64, 100, 128])
def test_scan_equals_brute_force_and_popcount(n_bits):
    rng = np.random.default_rng(n_bits)
    bits = codes_with_ties(rng, 700, n_bits)
    queries = np.concatenate([bits[:5], rng.random((10, n_bits)) < 0.5])
    words, query_words = pack_words(bits), pack_words(queries)
    popcount = np.bitwise_count(query_words[:, None, :] ^ words[None]).sum(axis=2)
    expected_ids, expected_dist, dist = brute_force(queries, bits, 40)
    assert np.array_equal(popcount, dist)
    ids, found = knn_search(words, query_words, 40, block=128)  # several blocks to merge
    assert np.array_equal(ids, expected_ids) and np.array_equal(found, expected_dist)
    assert np.array_equal(packed_from_words(words, n_bits), pack_bits(bits))


@pytest.mark.parametrize("n_bits", [12, 32])  # dense table (2^12 <= N), sparse table
@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_ball_lookup_is_the_hamming_ball(n_bits, radius):
    rng = np.random.default_rng(radius)
    bits = codes_with_ties(rng, 5000, n_bits, flip=0.05)
    queries = np.concatenate([bits[:20], rng.random((20, n_bits)) < 0.5])
    table = build_address_table(address_keys(pack_words(bits), n_bits), n_bits)
    assert table.dense == (n_bits == 12)
    offsets, documents, distances = ball_lookup(table, address_keys(pack_words(queries), n_bits),
                                                radius, block=7)
    dist = brute_force(queries, bits, 1)[2]
    for q in range(len(queries)):
        hits = documents[offsets[q] : offsets[q + 1]]
        assert np.array_equal(np.sort(hits), np.flatnonzero(dist[q] <= radius))  # each exactly once
        assert np.array_equal(distances[offsets[q] : offsets[q + 1]], dist[q, hits])
    assert offsets[-1] > len(queries)  # duplicates and neighbours were found, not only exact hits


def test_threads_and_blocks_do_not_change_the_ball():
    rng = np.random.default_rng(9)
    bits = codes_with_ties(rng, 3000, 32, flip=0.05)
    table = build_address_table(address_keys(pack_words(bits), 32), 32)
    queries = address_keys(pack_words(np.concatenate([bits[:300], rng.random((100, 32)) < 0.5])), 32)
    one = ball_lookup(table, queries, 2, threads=1)
    assert one[0][-1] > len(queries)
    for threads, block in ((2, 4096), (3, 7), (8, 1000)):
        assert all(np.array_equal(a, b) for a, b in zip(ball_lookup(table, queries, 2, block, threads), one))
    empty = ball_lookup(table, queries[:0], 2)
    assert len(empty[0]) == 1 and len(empty[1]) == len(empty[2]) == 0


@pytest.mark.parametrize("n_keys", [1, 7, 5000])
def test_hash_slots_find_what_binary_search_finds(n_keys):
    rng = np.random.default_rng(n_keys)
    keys = rng.integers(0, 2**32, n_keys, dtype=np.uint64).astype(np.uint32)
    keys[: min(2, n_keys)] = [0xFFFFFFFF, 0][: min(2, n_keys)]  # the extremes are keys too
    table = build_address_table(keys, 32, dense=False)
    assert table.slots is not None and len(table.slots) >= 2 * len(table.keys)
    occupied = table.slots[table.slots != EMPTY]
    assert np.array_equal(np.sort(occupied & np.uint64(0xFFFFFFFF)), np.arange(len(table.keys)))  # each key once
    assert np.array_equal(table.keys[(occupied & np.uint64(0xFFFFFFFF)).astype(np.int64)],
                          (occupied >> np.uint64(32)).astype(np.uint32))  # with its key
    probes = np.concatenate([keys, keys ^ 1, rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32)])
    probes = probes[: len(probes) // 10 * 10]  # (P / 10, 10) below: 2-D probes as ball_lookup makes them
    searched = type(table)(table.n_bits, table.keys, table.offsets, table.docs)  # no slots: binary search
    hashed, binary = lookup_ranges(table, probes.reshape(-1, 10)), lookup_ranges(searched, probes.reshape(-1, 10))
    assert all(np.array_equal(got, want) for got, want in zip(hashed, binary))
    starts, ends = lookup_ranges(table, keys)
    assert np.all(ends > starts)  # every stored key is found
    assert 8 * len(table.filter) >= 16 * len(table.keys) and _may_hold(table.filter, table.keys).all()
    absent = np.setdiff1d(probes, table.keys)
    assert _may_hold(table.filter, absent).mean() <= 1 / 16 + 0.03  # the filter stops most absent keys


# 16-bit substrings: any query and k up to N; wider ones: near queries, small k
# (far queries there probe millions of addresses: that is what the fallback is for).
@pytest.mark.parametrize("n_bits, m, far, ks", [
    (64, 4, True, (1, 17, 400)), (100, 7, True, (3, 400)), (128, 8, True, (1, 17, 400)),
    (64, 3, False, (1, 17)), (128, 5, False, (1, 17)),
])
def test_multi_index_equals_brute_force(n_bits, m, far, ks):
    rng = np.random.default_rng(n_bits + m)
    bits = codes_with_ties(rng, 400, n_bits, flip=0.08)
    queries = np.concatenate([bits[:6], bits[:3] ^ (rng.random((3, n_bits)) < 0.04)])
    if far:
        queries = np.concatenate([queries, rng.random((3, n_bits)) < 0.5])
    words, query_words = pack_words(bits), pack_words(queries)
    index = build_multi_index(words, n_bits, m)
    for k in ks:
        expected_ids, expected_dist, _ = brute_force(queries, bits, k)
        ids, dist = mih_knn(words, index, query_words, k, block=5)  # no scan fallback
        assert np.array_equal(ids, expected_ids) and np.array_equal(dist, expected_dist)


def test_substring_keys_read_the_code_bits():
    rng = np.random.default_rng(1)
    bits = rng.random((50, 128)) < 0.5
    key = substring_keys(pack_words(bits), 55, 20)  # crosses the word boundary at 64
    expected = (bits[:, 55:75] * (1 << np.arange(19, -1, -1))).sum(axis=1)
    assert np.array_equal(key, expected)


def test_hash_knn_with_scan_fallback_and_k_beyond_n():
    rng = np.random.default_rng(3)
    bits = codes_with_ties(rng, 300, 64)
    queries = np.concatenate([bits[:3], rng.random((3, 64)) < 0.5])
    index = build_hash_index(pack_words(bits), 64)
    assert index.mih is not None and index.address is None
    for k in (5, 299, 1000):
        ids, dist = hash_knn(index, queries, k)
        expected_ids, expected_dist, _ = brute_force(queries, bits, k)
        assert ids.shape == (6, min(k, 300))
        assert np.array_equal(ids, expected_ids) and np.array_equal(dist, expected_dist)


@pytest.mark.parametrize("n_items, n_bits, dense, hashed", [
    (1, 1, None, True), (5000, 8, None, True), (5000, 12, False, True), (3000, 20, None, True),
    (3000, 32, None, False), (1, 32, None, True), (300, 3, False, True),
])
def test_tables_as_built_are_in_range(n_items, n_bits, dense, hashed):
    keys = np.random.default_rng(n_bits).integers(0, 2**n_bits, n_items) >> np.random.default_rng(1).integers(0, 3)
    table = build_address_table(keys, n_bits, dense, hashed)
    assert table_problem(table, n_items) is None
    assert table_problem(table, n_items - 1)[0] == "docs"  # one code fewer: the last document id points past it


def test_a_multi_index_as_built_is_in_range():
    words = pack_words(np.random.default_rng(0).random((500, 100)) > 0.5)
    assert all(table_problem(table, 500) is None for table in build_multi_index(words, 100, 4).tables)


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(4)
    bits = codes_with_ties(rng, 2000, 32, flip=0.05)
    stats = write_hash_index(tmp_path / "index", bits, substrings=2, meta={"dataset": "toy"})
    return tmp_path / "index", bits, stats


def test_the_same_codes_write_byte_identical_files(saved, tmp_path):
    """No timings or other run-dependent values on disk: dvc repro gives the same index anywhere."""
    folder, bits, _ = saved
    write_hash_index(tmp_path / "again", bits, substrings=2, meta={"dataset": "toy"})
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    assert all((folder / n).read_bytes() == (tmp_path / "again" / n).read_bytes() for n in names)


def test_round_trip_memory_maps_and_answers_the_same(saved):
    folder, bits, stats = saved
    index = load_hash_index(folder)
    assert isinstance(index.words.base, np.memmap) and isinstance(index.address.docs.base, np.memmap)  # mapped views
    assert index.meta["format"] == HASH_FORMAT and index.meta["dataset"] == "toy"
    assert stats["n_items"] == 2000 and stats["tables"] == ["address", "mih"]
    assert stats["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert stats["bytes_per_item"] == stats["bytes"] / 2000 and stats["build_seconds"] > 0
    queries = bits[:30]
    built = build_hash_index(pack_words(bits), 32, substrings=2)
    for got, want in zip(hash_ball(index, queries, 2), hash_ball(built, queries, 2)):
        assert np.array_equal(got, want)
    expected_ids, expected_dist, _ = brute_force(queries, bits, 25)
    ids, dist = hash_knn(index, queries, 25)
    assert np.array_equal(ids, expected_ids) and np.array_equal(dist, expected_dist)


def test_truncated_array_is_a_dul_error_naming_it(saved):
    folder = saved[0]
    path = folder / "address.docs.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DulError, match=r"address\.docs\.npy.*truncated.*dvc repro index"):
        load_hash_index(folder)


def test_an_index_written_before_the_slots_still_answers(saved):
    folder, bits, _ = saved
    meta = json.loads((folder / "meta.json").read_text())
    for name in ("address.slots.npy", "address.filter.npy"):
        (folder / name).unlink()
        del meta["files"][name]
    (folder / "meta.json").write_text(json.dumps(meta))
    old, new = load_hash_index(folder), build_hash_index(pack_words(bits), 32, substrings=2)
    assert old.address.slots is None and new.address.slots is not None and new.address.filter is not None
    for got, want in zip(hash_ball(old, bits[:30], 2), hash_ball(new, bits[:30], 2)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("name, array, message", [
    ("slots", np.full(8, EMPTY, np.uint64), "is not a hash"),
    ("filter", np.zeros(12, np.uint8), "is not a filter"),
])
def test_slots_or_filter_that_cannot_serve_the_keys_are_a_dul_error(saved, name, array, message):
    folder = saved[0]
    meta = json.loads((folder / "meta.json").read_text())
    np.save(folder / f"address.{name}.npy", array)
    meta["files"][f"address.{name}.npy"]["shape"] = list(array.shape)
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DulError, match=rf"address\.{name}\.npy {message}"):
        load_hash_index(folder)


def test_wrong_shape_for_meta_is_a_dul_error(saved):
    folder = saved[0]
    np.save(folder / "words.npy", np.zeros((1999, 1), np.uint64))
    with pytest.raises(DulError, match=r"words\.npy.*another build"):
        load_hash_index(folder)


@pytest.mark.parametrize("change", [{"format": "dul-hash-index/0"}, {"n_items": "many"}, None])
def test_wrong_or_missing_meta_is_a_dul_error(saved, change):
    folder = saved[0]
    meta_path = folder / "meta.json"
    if change is None:
        meta_path.unlink()
    else:
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **change}))
    with pytest.raises(DulError, match=r"meta\.json.*dvc repro index"):
        load_hash_index(folder)


def test_query_code_length_must_match(saved):
    index = load_hash_index(saved[0])
    with pytest.raises(DulError, match="query codes are 31-bit but the index holds 32-bit"):
        hash_knn(index, np.zeros((2, 31), bool), 5)
    with pytest.raises(DulError, match="index holds 32-bit"):
        hash_ball(index, np.ones((2, 1), np.uint64), 1)  # bits set beyond the 32
    with pytest.raises(DulError, match="k = 0 is not valid"):
        hash_knn(index, np.zeros((2, 32), bool), 0)


def test_empty_build_and_missing_table_are_dul_errors(tmp_path):
    with pytest.raises(DulError, match="0 items"):
        write_hash_index(tmp_path / "index", np.zeros((0, 64), bool))
    assert not (tmp_path / "index").exists()
    index = build_hash_index(pack_words(np.ones((3, 64), bool)), 64)
    with pytest.raises(DulError, match="no address table"):
        hash_ball(index, np.ones((1, 64), bool), 1)


def test_rewrite_replaces_the_whole_folder(saved):
    folder, bits, _ = saved
    write_hash_index(folder, bits[:100, :20] | True)
    index = load_hash_index(folder)
    assert len(index) == 100 and index.n_bits == 20 and index.mih is None
    assert not (folder / "mih0.docs.npy").exists()
