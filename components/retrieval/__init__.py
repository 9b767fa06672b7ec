"""Semantic hashing retrieval: binary codes, Hamming kNN and the index file.

``codes`` turns real-valued code layers into balanced bits and finds nearest
neighbours by Hamming distance; ``index`` stores every item's code in one
``.npz``; ``hamming`` is the address-table / multi-index search engine;
``documents`` writes and opens the search folder (codes, ids, titles,
encoder, TF-IDF rows) and ``engine`` answers ``dul search`` from it: free
text or a stored item, shortlisted by the codes, re-ranked by TF-IDF.
"""

from components.retrieval.codes import (
    binarize,
    fit_thresholds,
    hamming_distances,
    knn,
    pack_bits,
    precision_at_k,
)
from components.retrieval.index import (
    FORMAT,
    Index,
    format_results,
    load_index,
    search,
    write_index,
)

__all__ = [
    "FORMAT",
    "Index",
    "binarize",
    "fit_thresholds",
    "format_results",
    "hamming_distances",
    "knn",
    "load_index",
    "pack_bits",
    "precision_at_k",
    "search",
    "write_index",
]
