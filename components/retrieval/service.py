"""The search API without HTTP: request parameters in, a JSON-ready dict out.

``SearchService.search`` checks q or doc, k and radius and calls the engine;
``document`` returns what the index keeps of one document. A bad request is
a ``RequestError`` carrying its HTTP status (4xx) and a one-line reason;
``components.retrieval.serve`` puts this on the wire.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import quote

from components.data.text import TOKEN_PATTERN
from components.errors import DulError
from components.retrieval.address import ball_masks
from components.retrieval.documents import SearchIndex
from components.retrieval.engine import resolve_item, search_item, search_text

MAX_K = 1000
MAX_QUERY_CHARS = 10_000
MAX_PROBES = 50_000  # addresses one query may probe: radius 4 of 32-bit codes probes 41,449
MAX_TEXT_BYTES = 1 << 20
PARAMETERS = ("q", "doc", "k", "radius")
USAGE = "GET /api/search?q=TEXT&k=10&radius=2, GET /api/search?doc=ID, GET /api/doc/ID, GET /api/status"
# the tokenizer's words as they stand in the text (it lowercases first); ASCII, as its pattern is
_WORD = re.compile(TOKEN_PATTERN, re.ASCII | re.IGNORECASE)


class RequestError(Exception):
    """A request the service refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SearchService:
    """The API without HTTP: parameters in, a JSON-ready dict out, RequestError for a bad request."""

    def __init__(self, index: SearchIndex, texts=(), worker: int = 0):
        self.index = index
        self.texts = [Path(folder) for folder in texts]
        self._engine = threading.Lock()  # one search at a time per process (components/retrieval/serve.py)
        self.worker = worker  # 0 in the process the user started, 1 in those its --workers started
        index.row_of  # noqa: B018 (built now, before any request thread reads it)

    def status(self) -> dict:
        index = self.index
        return {"documents": len(index), "bits": index.n_bits, "kind": index.meta.get("kind"),
                "vocabulary": None if index.vocabulary is None else len(index.vocabulary),
                "address_table": index.hash.address is not None, "texts": len(self.texts) > 0,
                "worker": self.worker}

    def search(self, params: dict) -> dict:
        """``params``: q or doc, and optional k and radius, as strings (a query string) or JSON values."""
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise RequestError(400, f"unknown parameter {unknown[0]!r}: the API takes {', '.join(PARAMETERS)}")
        text, doc = params.get("q"), params.get("doc")
        if (text is None) == (doc is None):
            raise RequestError(400, f"give exactly one of q (free text) or doc (a document id), e.g. {USAGE}")
        k = _integer(params.get("k", 10), "k", 1, MAX_K)
        radius = self._radius(params.get("radius"))
        if text is not None:
            return self._text(_string(text, "q"), k, radius)
        row = self._row(_string(doc, "doc"))
        with self._engine:
            result = search_item(self.index, row, k, radius)
        return self._answer(result, words=set())

    def _text(self, text: str, k: int, radius: int | None) -> dict:
        if not text.strip():
            raise RequestError(400, "the query is empty: give some words, e.g. /api/search?q=space+shuttle")
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(413, f"the query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
        with self._engine:
            result = search_text(self.index, text, k, radius)
        return self._answer(result, words=set(result.words))

    def _radius(self, value) -> int | None:
        if value is None or value == "":
            return None
        radius = _integer(value, "radius", 0, self.index.n_bits)
        probes = len(ball_masks(self.index.n_bits, radius)[0]) if self.index.hash.address is not None else 0
        if probes > MAX_PROBES:
            fits = max(r for r in range(radius) if len(ball_masks(self.index.n_bits, r)[0]) <= MAX_PROBES)
            raise RequestError(400, f"radius {radius} probes {probes:,} addresses of {self.index.n_bits}-bit codes, "
                               f"over this server's limit of {MAX_PROBES:,}: choose radius <= {fits}")
        return radius

    def _row(self, doc: str) -> int:
        try:
            return resolve_item(self.index, doc)
        except DulError as error:
            raise RequestError(404, str(error)) from None

    def _answer(self, result, words: set[str]) -> dict:
        index = self.index
        hits = [hit | {"title_parts": title_parts(hit["title"], words), "link": doc_link(hit["id"])}
                for hit in result.hits]
        return {"query": result.query, "words": result.words, "documents": len(index), "bits": index.n_bits,
                "shortlist": result.shortlist, "method": result.method,
                "latency_ms": round(result.seconds * 1e3, 3), "hits": hits}

    def document(self, doc: str) -> dict:
        """What the index keeps of one document: id, title, label, split, its heaviest
        TF-IDF words, and its text if a --texts folder holds a file named by its id."""
        index, row = self.index, self._row(doc)
        words = []
        if index.tfidf is not None:
            start, stop = index.tfidf.indptr[row], index.tfidf.indptr[row + 1]
            weights, columns = index.tfidf.data[start:stop], index.tfidf.indices[start:stop]
            order = sorted(range(len(columns)), key=lambda j: (-weights[j], columns[j]))[:40]
            words = [[index.vocabulary[columns[j]], round(float(weights[j]), 4)] for j in order]
        return {"id": str(index.ids[row]), "row": row, "title": str(index.titles[row]),
                "label": index.label_name(int(index.labels[row])), "split": str(index.splits[row]),
                "words": words, "text": self._read_text(str(index.ids[row]))}

    def _read_text(self, doc_id: str) -> str | None:
        for folder in self.texts:
            path = (folder / doc_id).resolve()
            if path.is_relative_to(folder.resolve()) and path.is_file():
                with open(path, "rb") as file:
                    data = file.read(MAX_TEXT_BYTES)
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    return data.decode("latin-1")  # Usenet posts: latin-1 maps every byte
        return None


def document_text(doc: dict) -> str:
    """``SearchService.document`` as plain text (what /doc/ID shows)."""
    lines = [f"{doc['id']}  ({doc['label']}, {doc['split']}, row {doc['row']})", doc["title"], ""]
    if doc["text"] is not None:
        return "\n".join(lines + [doc["text"]])
    lines.append("The index keeps no text, only each document's title and its word counts; start the server "
                 "with --texts FOLDER (FOLDER/<id> the document's file) to show the text here.")
    if doc["words"]:
        lines += ["", "Its words by TF-IDF weight:", *(f"  {word:<20} {weight:.4f}" for word, weight in doc["words"])]
    return "\n".join(lines) + "\n"


def title_parts(title: str, words: set[str]) -> list[list]:
    """The title cut into [text, matched] pieces, matched where a piece is a query word."""
    parts, at = [], 0
    for match in _WORD.finditer(title):
        if match.group().lower() in words:
            if match.start() > at:
                parts.append([title[at : match.start()], False])
            parts.append([match.group(), True])
            at = match.end()
    if at < len(title) or not parts:
        parts.append([title[at:], False])
    return parts


def doc_link(doc_id: str) -> str:
    return "/doc/" + quote(doc_id, safe="/")


def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"{name} must be a string, got {type(value).__name__}")
    return value


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,20}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"{name} = {str(value)[:40]!r} is not an integer: choose {low} to {high}")
    if not low <= value <= high:
        raise RequestError(400, f"{name} = {value} is out of range: choose {low} to {high}")
    return value


