"""`dul serve` on test_search's three-topic corpus: the JSON API, bad requests, concurrent
queries, the CLI, and the web page in a real headless browser (Debian's chromium)."""

import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from components.cli import main as dul
from components.retrieval.documents import load_search_index
from components.retrieval.engine import search_item, search_text
from components.retrieval.serve import make_server
from components.retrieval.service import SearchService, title_parts
from tests.conftest import REPO
from tests.test_search import TOPICS, build, corpus

# titles that hold the query's words, and markup that must stay text
TITLES = [f"{d[4][:30]} <script>window.pwned = 1</script> & {d[0]}" for d in corpus()]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_search_index(build(tmp_path_factory.mktemp("serve") / "search", titles=TITLES))


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    (folder / "sci.space").mkdir()
    (folder / "sci.space" / "1000").write_bytes("From: a\nSubject: orbit\n\nCaf\xe9 rocket".encode("latin-1"))
    return folder


@pytest.fixture(scope="module")
def server(index, texts):
    """The service on a free port of 127.0.0.1, in a thread; yields (host, port)."""
    server = make_server(SearchService(index, [texts]), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


def request(server, method: str, target: str, body: bytes | None = None, headers=None):
    """(status, headers, parsed JSON or text) over a fresh connection."""
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        data = answer.read()
    finally:
        connection.close()
    kind = answer.getheader("Content-Type", "")
    return answer.status, answer, json.loads(data) if kind.startswith("application/json") else data.decode()


def search(server, **params):
    target = "/api/search?" + "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return request(server, "GET", target)


def test_free_text_answers_what_search_text_finds(server, index):
    status, answer, body = search(server, q="rocket orbit!", k=3, radius=8)
    expected = search_text(index, "rocket orbit!", k=3, radius=8)
    assert status == 200 and answer.getheader("Content-Type") == "application/json"
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in expected.hits]
    assert body["words"] == ["orbit", "rocket"] and body["documents"] == 30 and body["bits"] == 8
    assert body["shortlist"] == 30 and 0 < body["latency_ms"] < 5000
    first = body["hits"][0]
    assert {"rank", "row", "id", "title", "label", "split", "distance", "score", "title_parts", "link"} <= set(first)
    assert first["label"] == "sci.space" and first["score"] == pytest.approx(expected.hits[0]["score"])
    assert first["link"] == "/doc/" + first["id"] and "".join(p[0] for p in first["title_parts"]) == first["title"]
    assert all(p[0].lower() in {"rocket", "orbit"} for p in first["title_parts"] if p[1])


def test_document_id_and_post_find_the_same_neighbours(server, index):
    expected = [h["id"] for h in search_item(index, "rec.hockey/1003", k=4).hits]
    assert [h["id"] for h in search(server, doc="rec.hockey/1003", k=4)[2]["hits"]] == expected
    status, _, body = request(server, "POST", "/api/search", json.dumps({"doc": "rec.hockey/1003", "k": 4}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200 and [h["id"] for h in body["hits"]] == expected and body["words"] == []
    assert search(server, q="oven", k=1)[2]["hits"][0]["label"] == "rec.cooking"


def test_title_parts_mark_the_tokenizers_words():
    assert title_parts("Re: ROCKET-launch, rockets", {"rocket", "launch"}) == [
        ["Re: ", False], ["ROCKET", True], ["-", False], ["launch", True], [", rockets", False]]
    assert title_parts("", {"x"}) == [["", False]] and title_parts("a b", set()) == [["a b", False]]


ONE_MB = "a" * (1 << 20)


@pytest.mark.parametrize("method, target, body, status, message", [
    ("GET", "/api/search?q=", None, 400, "the query is empty"),
    ("GET", "/api/search?q=%20%20", None, 400, "the query is empty"),
    ("GET", "/api/search?q=" + ONE_MB, None, 414, "Request-URI Too Long"),
    ("POST", "/api/search", json.dumps({"q": ONE_MB}), 413, "the request body is 1048585 bytes; the limit is 65536"),
    ("POST", "/api/search", json.dumps({"q": "rocket " * 1500}), 413, "the query is 10500 characters long"),
    ("GET", "/api/search?q=rocket&k=0", None, 400, "k = 0 is out of range: choose 1 to 1000"),
    ("GET", "/api/search?q=rocket&k=-3", None, 400, "k = -3 is out of range"),
    ("GET", "/api/search?q=rocket&k=1000000000000", None, 400, "k = 1000000000000 is out of range"),
    ("GET", "/api/search?q=rocket&k=ten", None, 400, "k = 'ten' is not an integer"),
    ("POST", "/api/search", json.dumps({"q": "rocket", "k": True}), 400, "k = 'True' is not an integer"),
    ("GET", "/api/search?doc=sci.space/100x", None, 404, "no document has id 'sci.space/100x'"),
    ("GET", "/api/doc/nowhere/1", None, 404, "no document has id 'nowhere/1'"),
    ("GET", "/doc/../../etc/passwd", None, 404, "no document has id '../../etc/passwd'"),
    ("GET", "/api/search?q=%FF%FE", None, 400, "the query string is not UTF-8"),
    ("POST", "/api/search", b'{"q": "caf\xe9"}', 400, "the request body is not UTF-8"),
    ("POST", "/api/search", b"\xff\xfe{\x00", 400, "the request body is not UTF-8"),
    ("POST", "/api/search", b"q=rocket", 400, "the request body is not JSON"),
    ("POST", "/api/search", b"[1]", 400, "the request body must be a JSON object"),
    ("GET", "/api/search?q=the+and+of+42", None, 400, "has no searchable words (only stop words"),
    ("GET", "/api/search?q=zebra", None, 400, "none of the query's words are in the 24-word vocabulary"),
    ("GET", "/api/search?q=rocket&radius=9", None, 400, "radius = 9 is out of range: choose 0 to 8"),
    ("GET", "/api/search?q=rocket&doc=sci.space/1000", None, 400, "give exactly one of q"),
    ("GET", "/api/search?k=3", None, 400, "give exactly one of q"),
    ("GET", "/api/search?q=rocket&q=orbit", None, 400, "parameter 'q' is given 2 times"),
    ("GET", "/api/search?query=rocket", None, 400, "unknown parameter 'query'"),
    ("GET", "/api/nothing", None, 404, "no such path '/api/nothing'"),
    ("DELETE", "/api/search?q=rocket", None, 501, "Unsupported method ('DELETE')"),
])
def test_a_bad_request_is_a_4xx_with_one_line_and_the_server_goes_on(server, method, target, body, status, message):
    data = body.encode() if isinstance(body, str) else body
    got, answer, reply = request(server, method, target, data)
    assert got == status and answer.getheader("Content-Type") == "application/json"
    assert set(reply) == {"error"} and message in reply["error"] and "\n" not in reply["error"], reply
    assert search(server, q="rocket", k=2)[0] == 200


def test_radius_is_capped_by_the_addresses_it_probes(tmp_path):
    service = SearchService(load_search_index(build(tmp_path / "wide", n_bits=32)))
    assert len(service.search({"q": "rocket", "radius": "4"})["hits"]) == 10  # 41,449 addresses: allowed
    with pytest.raises(Exception, match="radius 5 probes 242,825 addresses of 32-bit codes, over this server's "
                                        "limit of 50,000: choose radius <= 4"):
        service.search({"q": "rocket", "radius": "5"})


def test_concurrent_queries_get_the_answers_of_one_at_a_time(server, index):
    queries = [" ".join(d[4].split()[:3]) for d in corpus()]
    expected = {q: [h["id"] for h in search_text(index, q, k=5).hits] for q in queries}

    def ask(query):
        connection = http.client.HTTPConnection(*server, timeout=10)  # one keep-alive connection, many queries
        got = []
        for _ in range(4):
            connection.request("GET", f"/api/search?k=5&q={quote(query)}")
            got.append([h["id"] for h in json.loads(connection.getresponse().read())["hits"]])
        connection.close()
        return query, got

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, queries))
    assert len(answers) == 30 and all(got == [expected[q]] * 4 for q, got in answers)


def test_a_document_shows_what_the_index_keeps_and_its_text(server):
    status, _, doc = request(server, "GET", "/api/doc/rec.cooking/1002")
    assert status == 200 and doc["id"] == "rec.cooking/1002" and doc["label"] == "rec.cooking" and doc["text"] is None
    words = [w for w, _ in doc["words"]]
    assert words and set(words) <= set(TOPICS["rec.cooking"].split())
    assert [w for _, w in doc["words"]] == sorted((w for _, w in doc["words"]), reverse=True)
    status, answer, text = request(server, "GET", "/doc/rec.cooking/1002")
    assert answer.getheader("Content-Type") == "text/plain; charset=utf-8" and "The index keeps no text" in text
    assert request(server, "GET", "/api/doc/sci.space/1000")[2]["text"] == "From: a\nSubject: orbit\n\nCafé rocket"
    assert request(server, "GET", "/doc/sci.space/1000")[2].endswith("Café rocket")


def test_the_page_allows_only_its_own_script(server):
    status, answer, page = request(server, "GET", "/")
    assert status == 200 and answer.getheader("Content-Type") == "text/html; charset=utf-8"
    policy = answer.getheader("Content-Security-Policy")
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "innerHTML" not in page and 'id="search"' in page


@pytest.mark.parametrize("host, warned", [(None, False), ("0.0.0.0", True)])
def test_cli_binds_127_0_0_1_unless_told(index, monkeypatch, capsys, host, warned):
    from http.server import ThreadingHTTPServer

    bound = {}

    def serve_forever(self):  # the real server, bound; stopped at once as Ctrl-C would
        bound["address"] = self.server_address
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", serve_forever)
    args = ["serve", "--index", str(index.folder), "--port", "0"] + (["--host", host] if host else [])
    assert dul(args) == 0
    out, err = capsys.readouterr()
    assert bound["address"][0] == (host or "127.0.0.1")
    assert out.startswith(f"serving 30 documents (8-bit codes) from {index.folder} at http://{host or '127.0.0.1'}:")
    assert out.endswith("stopped\n") and ("no authentication" in err) == warned


def test_workers_answer_on_one_port_and_stop_with_the_server(index):
    command = [sys.executable, "-m", "components.cli", "serve", "--index", str(index.folder), "--port", "0",
               "--workers", "2"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = server.stdout.readline()
        assert "(8-bit codes, 2 processes)" in line, line
        address = ("127.0.0.1", int(re.search(r":(\d+)/", line).group(1)))
        workers = {request(address, "GET", "/api/status")[2]["worker"] for _ in range(24)}  # a connection each
        assert workers == {0, 1}  # the kernel shared the connections out between the two processes
        assert len(search(address, q="rocket", k=3)[2]["hits"]) == 3
        [child] = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    finally:
        server.terminate()
        assert server.wait(20) == 0
    assert server.stdout.read() == "stopped\n" and not Path(f"/proc/{child}").exists()


def test_cli_refuses_a_codes_file_and_a_missing_texts_folder(index, tmp_path, capsys):
    (tmp_path / "codes.npz").write_bytes(b"")
    assert dul(["serve", "--index", str(tmp_path / "codes.npz")]) == 2
    assert "dul serve answers from the search folder" in capsys.readouterr().err
    assert dul(["serve", "--index", str(index.folder), "--texts", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_benchmarks_load_loop_and_resampled_documents(server, index):
    import numpy as np
    import scipy.sparse

    from benchmarks.search_service import load_loop, resample

    texts = [" ".join(d[4].split()[:2]) for d in corpus()][:12]
    report = load_loop("{}:{}".format(*server), texts, clients=3)
    assert report["failures"] == 0 and report["summary"]["queries"] == 12 and report["summary"]["qps"] > 0
    assert report["answers"] == {t: [h["id"] for h in search_text(index, t).hits] for t in texts}
    counts = scipy.sparse.csr_matrix(np.array([[3, 0, 1], [0, 2, 0]]))
    resampled, source = resample(counts, 5, np.random.default_rng(0))
    assert list(source) == [0, 1, 0, 1, 0] and (resampled[:2] != counts).nnz == 0
    assert list(np.asarray(resampled.sum(axis=1)).ravel()) == [4, 2, 4, 2, 4]  # a copy keeps the post's length
    assert resampled[[1, 3]].toarray()[:, [0, 2]].sum() == 0  # ... and draws only the post's words


def browser():
    """A headless chromium under selenium, or a skip that says how to get one."""
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no chromium/chromedriver: apt-get install chromium chromium-driver (Debian) to test the page")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' installs selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_the_page_finds_and_highlights_in_a_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome = browser()
    try:
        chrome.get("http://{}:{}/".format(*server))
        form = chrome.find_element(By.ID, "search")
        form.find_element(By.NAME, "q").send_keys("rocket <b>orbit</b>")
        form.find_element(By.NAME, "k").clear()
        form.find_element(By.NAME, "k").send_keys("4")
        form.find_element(By.NAME, "radius").send_keys("8")
        form.find_element(By.TAG_NAME, "button").click()
        hits = WebDriverWait(chrome, 20).until(lambda c: c.find_elements(By.CSS_SELECTOR, "#results li.hit"))
        assert len(hits) == 4 and all("sci.space/" in hit.text for hit in hits)
        marks = chrome.find_elements(By.CSS_SELECTOR, "#results mark")
        assert marks and {m.text.lower() for m in marks} <= {"rocket", "orbit"}
        title = hits[0].find_element(By.CSS_SELECTOR, "a.title")
        assert "<script>window.pwned = 1</script>" in title.text  # shown as text, never run
        assert chrome.execute_script("return window.pwned") is None
        assert not chrome.find_elements(By.CSS_SELECTOR, "#results script, #results b")
        doc_id = hits[0].text.split("\n")[1].split(" · ")[0]
        assert title.get_attribute("href").endswith("/doc/" + doc_id)
        assert "for words orbit, rocket" in chrome.find_element(By.ID, "summary").text
        assert "q=rocket" in chrome.current_url  # the search is in the address: it can be linked to
        title.click()
        WebDriverWait(chrome, 10).until(lambda c: c.current_url.endswith("/doc/" + doc_id))
        assert chrome.find_element(By.TAG_NAME, "body").text.startswith(doc_id + "  (sci.space, ")
        chrome.get("http://{}:{}/?q=the".format(*server))  # a bad query: the page says why
        WebDriverWait(chrome, 10).until(lambda c: "error: " in c.find_element(By.ID, "summary").text)
        assert "no searchable words" in chrome.find_element(By.ID, "summary").text
    finally:
        chrome.quit()
