"""``dul serve``: the search index over HTTP, a JSON API and one web page.

    GET  /                                 the page: type a query, read the results
    GET  /api/search?q=TEXT&k=10&radius=2  free text (k and radius optional)
    GET  /api/search?doc=ID&k=10           a stored document's neighbours, itself left out
    POST /api/search                       the same as a UTF-8 JSON object: {"q": TEXT, "k": 10}
    GET  /api/doc/ID                       what the index keeps of a document (its text with --texts)
    GET  /doc/ID                           the same as plain text: where the page's links go
    GET  /api/status                       documents, bits, vocabulary size

A search answers ``{"query", "words", "documents", "bits", "shortlist",
"method", "latency_ms", "hits"}``; each hit has ``rank, row, id, title,
label, split, distance`` (Hamming), ``score`` (TF-IDF cosine, null without
re-ranking), ``title_parts`` (the title cut into ``[text, matched]``
pieces, matched where a piece is one of the query's ``words``) and ``link``
(its /doc/ID). ``latency_ms`` is the engine's time for the query
(``SearchResult.seconds``). A bad request gets a 4xx and ``{"error": "<one
line>"}``; the server goes on answering.

One process, one thread per connection (``ThreadingHTTPServer``), all of
them reading the one loaded index: it is read-only (memory-mapped arrays,
the encoder in eval mode under ``torch.no_grad``), and the engine keeps no
mutable state between queries. torch runs on one intra-op thread: a
(1, 2000) query's matmuls are too small to gain from more, and on 2 cores
more threads only fight the request threads (see benchmarks/search_service.py).
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

from components.data.text import TOKEN_PATTERN
from components.errors import DulError
from components.retrieval.address import ball_masks
from components.retrieval.documents import SearchIndex
from components.retrieval.engine import resolve_item, search_item, search_text
from components.retrieval.serve_page import PAGE, PAGE_HEADERS

MAX_K = 1000
MAX_QUERY_CHARS = 10_000
MAX_BODY_BYTES = 64 << 10
MAX_DRAIN_BYTES = 4 << 20  # a refused request up to this size is read whole, so the client sees the refusal
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

    def __init__(self, index: SearchIndex, texts=()):
        self.index = index
        self.texts = [Path(folder) for folder in texts]

    def status(self) -> dict:
        index = self.index
        return {"documents": len(index), "bits": index.n_bits, "kind": index.meta.get("kind"),
                "vocabulary": None if index.vocabulary is None else len(index.vocabulary),
                "address_table": index.hash.address is not None, "texts": len(self.texts) > 0}

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
        return self._answer(search_item(self.index, row, k, radius), words=set())

    def _text(self, text: str, k: int, radius: int | None) -> dict:
        if not text.strip():
            raise RequestError(400, "the query is empty: give some words, e.g. /api/search?q=space+shuttle")
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(413, f"the query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
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


class Handler(BaseHTTPRequestHandler):
    """Routes requests to ``service``; every answer has a Content-Length (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "dul-serve"
    disable_nagle_algorithm = True  # a small answer goes out at once, not after the client's delayed ACK
    timeout = 60  # an idle keep-alive connection frees its thread after a minute
    service: SearchService

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, route) -> None:
        try:
            status, body, content_type = route()
        except RequestError as error:
            status, body, content_type = error.status, _error_json(str(error)), "application/json"
        except DulError as error:
            status, body, content_type = 400, _error_json(str(error)), "application/json"
        except Exception:  # a bug: say so, log it, keep serving
            traceback.print_exc(file=sys.stderr)
            status, body, content_type = 500, _error_json("internal error; the server's log has the details"), \
                "application/json"
        self._send(status, body, content_type)

    def _get(self):
        path, _, query = self._target()
        if path in ("/", "/index.html"):
            return 200, PAGE, "text/html; charset=utf-8"
        if path == "/api/search":
            return _json(self.service.search(self._query_params(query)))
        if path == "/api/status":
            return _json(self.service.status())
        if path.startswith("/api/doc/"):
            return _json(self.service.document(path[len("/api/doc/"):]))
        if path.startswith("/doc/"):
            return 200, document_text(self.service.document(path[len("/doc/"):])).encode(), \
                "text/plain; charset=utf-8"
        raise RequestError(404, f"no such path {path[:100]!r}: the API is {USAGE}")

    def _post(self):
        path, _, _ = self._target()
        if path != "/api/search":
            raise RequestError(404, f"POST goes to /api/search only, not {path[:100]!r}")
        return _json(self.service.search(self._json_body()))

    def _target(self) -> tuple[str, str, str]:
        """The path (percent-decoded) and the raw query string; not UTF-8 is a 400."""
        try:
            raw = self.path.encode("latin-1").decode("utf-8")  # http.server read the line as latin-1
            path, mark, query = raw.partition("?")
            return unquote(path, errors="strict"), mark, query
        except UnicodeError:
            raise RequestError(400, "the request's path is not UTF-8 (percent-encode UTF-8 bytes)") from None

    @staticmethod
    def _query_params(query: str) -> dict:
        try:
            pairs = parse_qs(query, keep_blank_values=True, errors="strict")
        except UnicodeError:
            raise RequestError(400, "the query string is not UTF-8 (percent-encode UTF-8 bytes)") from None
        repeated = next((name for name, values in pairs.items() if len(values) > 1), None)
        if repeated is not None:
            raise RequestError(400, f"parameter {repeated!r} is given {len(pairs[repeated])} times; give it once")
        return {name: values[0] for name, values in pairs.items()}

    def _json_body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise RequestError(411, "POST needs a Content-Length header (a JSON object of at most "
                               f"{MAX_BODY_BYTES} bytes)")
        if int(length) > MAX_BODY_BYTES:
            self._drain(int(length))
            raise RequestError(413, f"the request body is {int(length)} bytes; the limit is {MAX_BODY_BYTES}")
        body = self.rfile.read(int(length))
        try:
            params = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(400, "the request body is not UTF-8: send a UTF-8 JSON object") from None
        except json.JSONDecodeError as error:
            raise RequestError(400, f"the request body is not JSON ({error.msg} at character {error.pos})") from None
        if not isinstance(params, dict):
            raise RequestError(400, 'the request body must be a JSON object, e.g. {"q": "space shuttle", "k": 10}')
        return params

    def _drain(self, length: int) -> None:
        """Read and drop a refused body (a client still sending would miss the answer), then close."""
        self.close_connection = True
        if length <= MAX_DRAIN_BYTES:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                length = length - len(chunk) if chunk else 0

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        if content_type.startswith("text/html"):
            for name, value in PAGE_HEADERS.items():
                self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a 414 request line over 64 KiB, a malformed request, an
        unsupported method) as the API's one-line JSON, not its HTML page."""
        self.close_connection = True
        if code == 414:  # the rest of the request line, as a refused body
            self.rfile.readline(MAX_DRAIN_BYTES)
        reason = message or self.responses.get(code, ("error",))[0]
        self._send(code, _error_json(f"{reason} ({code})"), "application/json")

    def log_message(self, format: str, *args) -> None:
        """No access log: a line per query would cost more than the query."""


def _json(payload: dict):
    return 200, json.dumps(payload).encode(), "application/json"


def _error_json(message: str) -> bytes:
    return json.dumps({"error": " ".join(str(message).split())}).encode()


def make_server(service: SearchService, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server bound to ``host``:``port`` (0: any free port); call ``serve_forever`` to run it."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler, bind_and_activate=False)
    server.daemon_threads = True
    server.request_queue_size = 128  # a burst of new connections waits instead of being refused
    try:
        server.server_bind()
        server.server_activate()
    except OSError as error:
        server.server_close()
        raise DulError(f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port "
                       f"(0: any free one) or --host") from None
    return server
