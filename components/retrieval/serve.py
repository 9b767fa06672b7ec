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

Each process serves one thread per connection (``ThreadingHTTPServer``),
all reading the one loaded index: it is read-only (memory-mapped arrays, the
encoder in eval mode under ``torch.no_grad``, lookups built at load) and the
engine keeps no state between queries. A query's search is CPU work under
the GIL, so the threads take turns at it (``SearchService``'s lock): parsing
and answering overlap, searches do not, and no thread pays for handing the
GIL back and forth in the middle of one (8 clients, 100k documents: about
5-10% more queries per second and a lower p99 than without the lock).
``--workers N`` starts N - 1 more processes on the same port (SO_REUSEPORT:
the kernel shares the connections out), each with its own GIL: on 2 cores,
2 of them answered 951 queries a second against one's 734. torch runs on one
intra-op thread: encoding a query takes 0.13 CPU ms on 1 or 2 threads alike
(a (1, 2000) matmul is below torch's grain for splitting work), and more
threads would only compete with the request threads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from components.errors import DulError
from components.retrieval.serve_page import PAGE, PAGE_HEADERS
from components.retrieval.service import USAGE, RequestError, SearchService, document_text

MAX_BODY_BYTES = 64 << 10
MAX_DRAIN_BYTES = 4 << 20  # a refused request up to this size is read whole, so the client sees the refusal


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


def make_server(service: SearchService, host: str = "127.0.0.1", port: int = 8000, *,
                reuse_port: bool = False) -> ThreadingHTTPServer:
    """A server bound to ``host``:``port`` (0: any free port); call ``serve_forever`` to run it.
    ``reuse_port``: other processes of this user may listen on the same port (SO_REUSEPORT), and
    the kernel shares the connections out among them (``start_workers``)."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler, bind_and_activate=False)
    server.daemon_threads = True
    server.request_queue_size = 128  # a burst of new connections waits instead of being refused
    try:
        if reuse_port:
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        server.server_bind()
        server.server_activate()
    except OSError as error:
        server.server_close()
        raise DulError(f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port "
                       f"(0: any free one) or --host") from None
    return server


def start_workers(count: int, arguments: list[str]) -> list[subprocess.Popen]:
    """``count`` more ``dul serve ARGUMENTS --worker PID`` processes, each with its own copy of the
    index (the arrays are memory-mapped: the page cache holds them once) and its own GIL, listening
    on the same port; returns once every one has said it is ready (DulError if one did not)."""
    command = [sys.executable, "-m", "components.cli", "serve", *arguments, "--worker", str(os.getpid())]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for worker in workers:
        line = worker.stdout.readline().strip()
        if line != "ready":
            stop_workers(workers)
            raise DulError(f"a worker process did not start (it said {line!r}; its error is above)")
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()


def exit_with_parent(parent: int) -> None:
    """A worker ends when the process that started it is gone, however that one ended."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
