"""`dul serve` under concurrent load next to `dul search` in-process, on the same queries.

    python benchmarks/search_service.py [--documents 100000] [--queries 2000] [--clients 8] [--workers 1,2]
        [--archive ../shared/data/20news-bydate/20news-bydate.tar.gz] [--out docs/results/search-service.json]

The index: --documents bag-of-words documents over the 2,000 most frequent
training words of the real 20 Newsgroups posts (bydate, all 18,846 posts,
headers kept): the posts themselves, then resampled copies of them (each a
multinomial draw of as many words as the post has, from the post's own word
frequencies; id ``<newsgroup>/<number>~<copy>``), so that the words, lengths
and topics are the corpus's. The encoder is the semantic-hashing paper's
shape, 2000-500-500-32 (Salakhutdinov & Hinton 2009), with seeded random
weights: an untrained encoder encodes as fast as a trained one, and its codes
(median thresholds, balanced bits) make a radius-2 ball and shortlist of the
usual sizes. The queries are the Subject lines of the test posts that keep a
vocabulary word (``Re:`` removed), in a seeded order: 2 to 10 words, as typed.

Measured, in one run, on the same queries with the defaults (k 10, radius 2):

(a) ``dul search`` in-process: ``search_text`` called directly, one query
    after another (what `dul search` does once it has opened the index), its
    wall time per query;
(b) ``dul serve --workers N`` for each N of --workers, in child processes
    bound to 127.0.0.1: --clients threads (in another child process, so the
    client does not share a server's GIL) each keep one HTTP/1.1 connection
    open and send their share of the queries as fast as answers come back (a
    closed loop: at most --clients queries in flight); latency is the
    client's, from sending the request to reading the whole answer; queries
    per second is the count over the wall time of the whole loop.

The --repeats runs interleave (a, then each b) so that a change in the
machine's load falls on all alike; each figure is the median of its
--repeats values (qps, p50 and p99 each on its own), with the CPU
milliseconds a query cost each side (all of a server's
processes and threads) and the load average: on a shared machine those say
how much of the wall time was other people's. Prints the CPU model and
flags; writes --out (JSON), its headline figures those of the largest N.
Exit status 1 if a request fails or an answer differs from search_text's
(ids, in order).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from components.data.newsgroups import load_20newsgroups
from components.data.text import build_vocabulary, count_vectors, tokenize
from components.models.autoencoder import DeepAutoencoder
from components.retrieval.documents import write_search_index
from components.training.pretrain import cpu_line

ARCHIVE = Path("../shared/data/20news-bydate/20news-bydate.tar.gz")
SIZES = (2000, 500, 500, 32)


def corpus(archive: Path) -> dict:
    """The 20 Newsgroups posts as counts over the 2,000 most frequent training words."""
    posts = load_20newsgroups(archive, expected_sha256=None)
    tokens = {split: [tokenize(text) for text in posts[split]["texts"]] for split in ("train", "test")}
    vocabulary = build_vocabulary(tokens["train"], 2000)
    counts = scipy.sparse.vstack([count_vectors(tokens[s], vocabulary) for s in ("train", "test")]).tocsr()
    pick = {name: [x for s in ("train", "test") for x in posts[s][name]] for name in ("ids", "titles")}
    labels = np.concatenate([posts["train"]["labels"], posts["test"]["labels"]])
    splits = ["train"] * len(tokens["train"]) + ["test"] * len(tokens["test"])
    return {"counts": counts, "vocabulary": vocabulary, "labels": labels, "splits": splits,
            "label_names": posts["label_names"], "test_titles": posts["test"]["titles"], **pick}


def resample(counts: scipy.sparse.csr_matrix, n: int, rng: np.random.Generator):
    """(n, V) counts: the rows of ``counts``, then multinomial redraws of them in turn; and each row's source."""
    source = np.arange(n) % counts.shape[0]
    rows = [counts]
    extra = source[counts.shape[0]:]
    if len(extra):
        indptr, indices, data = [0], [], []
        for row in extra:
            start, stop = counts.indptr[row], counts.indptr[row + 1]
            words, weights = counts.indices[start:stop], counts.data[start:stop]
            drawn = rng.multinomial(int(weights.sum()), weights / weights.sum()) if len(words) else weights
            keep = drawn > 0
            indices.append(words[keep])
            data.append(drawn[keep])
            indptr.append(indptr[-1] + int(keep.sum()))
        rows.append(scipy.sparse.csr_matrix((np.concatenate(data).astype(np.int32), np.concatenate(indices),
                                             np.asarray(indptr)), shape=(len(extra), counts.shape[1])))
    return scipy.sparse.vstack(rows).tocsr()[:n], source


def build_index(folder: Path, data: dict, n_docs: int, seed: int) -> None:
    """The search folder of ``n_docs`` documents (see the module docstring)."""
    rng = np.random.default_rng(seed)
    counts, source = resample(data["counts"], n_docs, rng)
    copy = np.arange(n_docs) // data["counts"].shape[0]
    ids = [data["ids"][s] + (f"~{c}" if c else "") for s, c in zip(source, copy)]
    torch.manual_seed(seed)
    model = DeepAutoencoder(SIZES, "linear", "poisson").eval()
    codes = []
    with torch.no_grad():
        for start in range(0, n_docs, 4096):
            block = counts[start : start + 4096].toarray().astype(np.float32)
            codes.append(model.encode(torch.from_numpy(block)).numpy())
    codes = np.concatenate(codes)
    splits = np.asarray(data["splits"])[source]
    thresholds = np.median(codes[splits == "train"], axis=0).astype(np.float32)
    write_search_index(folder, model=model, thresholds=thresholds, bits=codes > thresholds, ids=ids,
                       titles=[data["titles"][s] for s in source], labels=data["labels"][source], splits=splits,
                       meta={"dataset": "20newsgroups-resampled", "kind": "bow", "label_names": data["label_names"]},
                       counts=counts, vocabulary=data["vocabulary"])


def queries(data: dict, n: int, seed: int) -> list[str]:
    """Test posts' Subject lines with a vocabulary word, ``Re:`` removed, in a seeded order."""
    words = set(data["vocabulary"])
    titles = {re.sub(r"^(re:\s*)+", "", t, flags=re.IGNORECASE).strip() for t in data["test_titles"]}
    usable = sorted(t for t in titles if any(w in words for w in tokenize(t)))
    order = np.random.default_rng(seed).permutation(len(usable))
    return [usable[i] for i in order[:n]]



def in_process(folder: Path):
    """A function that runs ``search_text`` on each query in turn: its qps, p50, p99 and CPU ms a
    query, and each query's ids (what `dul search` does once it has opened the index)."""
    from components.retrieval.documents import load_search_index
    from components.retrieval.engine import search_text

    torch.set_num_threads(1)  # as dul serve runs it
    index = load_search_index(folder)

    def run(texts: list[str]) -> tuple[dict, dict]:
        seconds, answers = [], {}
        start, cpu = time.perf_counter(), time.process_time()
        for text in texts:
            begin = time.perf_counter()
            result = search_text(index, text)
            seconds.append(time.perf_counter() - begin)
            answers[text] = [hit["id"] for hit in result.hits]
        cpu_ms = round(1e3 * (time.process_time() - cpu) / len(texts), 3)
        return summary(seconds, time.perf_counter() - start) | {"cpu_ms_per_query": cpu_ms}, answers

    return run


def summary(seconds: list[float], wall: float) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"qps": round(len(ms) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3),
            "queries": len(ms), "seconds": round(wall, 3)}


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen, str, int]:
    """`dul serve --port 0 --workers N` in a child process; its host and port from the line it prints."""
    command = [sys.executable, "-m", "components.cli", "serve", "--index", str(folder), "--port", "0",
               "--workers", str(workers)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    found = re.search(r"at http://([^:/]+):(\d+)/", line)
    if not found:
        server.kill()
        sys.exit(f"error: dul serve did not start: {line!r}")
    return server, found.group(1), int(found.group(2))


def load(host: str, port: int, texts: list[str], clients: int) -> tuple[dict, dict, int]:
    """The closed loop in a child process (``--load``): its summary, each query's ids, failures."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(texts, file)
    command = [sys.executable, __file__, "--load", f"{host}:{port}", "--queries-file", file.name,
               "--clients", str(clients)]
    try:
        report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    finally:
        os.unlink(file.name)
    return report["summary"], report["answers"], report["failures"]


def load_loop(address: str, texts: list[str], clients: int) -> dict:
    """--clients threads, one keep-alive connection each, the queries dealt out in turn; a
    lean HTTP/1.1 client (one send, read to Content-Length) so the client costs the machine little."""
    import socket
    import threading
    from urllib.parse import quote

    host, port = address.rsplit(":", 1)
    requests = [f"GET /api/search?q={quote(t)} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode() for t in texts]
    seconds, answers, failures = [0.0] * len(texts), {}, []
    gate = threading.Barrier(clients + 1)

    def client(first: int) -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            gate.wait()
            for i in range(first, len(requests), clients):
                begin = time.perf_counter()
                sock.sendall(requests[i])
                status, body = read_answer(reader)
                seconds[i] = time.perf_counter() - begin
                if status != 200:
                    failures.append(f"{texts[i]!r}: {status} {body[:200]!r}")
                else:
                    answers[texts[i]] = [hit["id"] for hit in json.loads(body)["hits"]]

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    client_cpu = round(1e3 * (time.process_time() - cpu) / len(texts), 3)
    return {"summary": summary(seconds, wall) | {"client_cpu_ms_per_query": client_cpu}, "answers": answers,
            "failures": len(failures), "first_failures": failures[:3]}


def read_answer(reader) -> tuple[int, bytes]:
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and its child processes (the --workers),
    all their threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


def medians(runs: list[dict]) -> dict:
    """Each figure's median over the runs, on its own (the p99 of the median-qps run swings more)."""
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client connections (default: 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="20news-bydate.tar.gz")
    parser.add_argument("--index", type=Path, help="build the index here (kept; reused if it exists)")
    parser.add_argument("--workers", type=lambda text: [int(w) for w in text.split(",")], default=[1, 2],
                        help="the `dul serve --workers` to measure, comma-separated (default: 1,2)")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # HOST:PORT: run the client loop (a child process)
    parser.add_argument("--queries-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load_loop(args.load, json.loads(Path(args.queries_file).read_text()), args.clients)))
        return 0
    print(f"{cpu_line()}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.index or Path(scratch) / "search"
        start = time.perf_counter()
        data = corpus(args.archive)
        if not (folder / "meta.json").exists():
            build_index(folder, data, args.documents, args.seed)
        texts = queries(data, args.queries, args.seed)
        print(f"index: {args.documents} documents, {len(texts)} queries ({time.perf_counter() - start:.0f} s)")
        return compare(args, folder, texts)


def compare(args, folder: Path, texts: list[str]) -> int:
    """The repeats interleaved (in-process, then each server), so a change in the machine's load
    between them falls on every one alike."""
    search_run = in_process(folder)
    servers = {workers: start_server(folder, workers) for workers in args.workers}
    runs = {"dul search": [], **{f"dul serve --workers {w}": [] for w in args.workers}}
    problems = []
    try:
        for _, host, port in servers.values():
            load(host, port, texts[:200], args.clients)  # warm up, untimed
        for _ in range(args.repeats):
            run, expected = search_run(texts)
            runs["dul search"].append(run)
            for workers, (server, host, port) in servers.items():
                before = cpu_seconds(server.pid)
                run, answers, failures = load(host, port, texts, args.clients)
                cpu_ms = round(1e3 * (cpu_seconds(server.pid) - before) / len(texts), 3)
                runs[f"dul serve --workers {workers}"].append(run | {"cpu_ms_per_query": cpu_ms})
                differ = sum(answers.get(t) != expected[t] for t in texts)
                if failures or differ:
                    problems.append(f"--workers {workers}: {failures} failed requests, {differ} answers differ "
                                    f"from search_text's")
    finally:
        for server, _, _ in servers.values():
            server.terminate()
            server.wait(10)
    report(args, {name: medians(each) for name, each in runs.items()}, runs)
    for problem in problems:
        print(f"error: {problem}")
    return 1 if problems else 0


def report(args, figures: dict, runs: dict) -> None:
    print(f"{args.clients} client connections against dul serve; dul search one query after another; "
          f"each figure the median of {args.repeats} runs of {args.queries} queries")
    print(f"{'':<24}{'qps':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU ms/query':>14}")
    for name, run in figures.items():
        print(f"{name:<24}{run['qps']:>8.0f}{run['p50_ms']:>9.2f}{run['p99_ms']:>9.2f}{run['max_ms']:>9.1f}"
              f"{run['cpu_ms_per_query']:>14.3f}")
    search = figures["dul search"]
    headline = f"dul serve --workers {max(args.workers)}"
    service = figures[headline]
    met = service["qps"] >= 500 and service["p99_ms"] < 50
    load_average = [round(x, 2) for x in os.getloadavg()]
    print(f"{headline}: {service['qps'] / search['qps']:.2f}x dul search's queries per second; target "
          f"(>= 500 qps, p99 < 50 ms) {'met' if met else 'MISSED'}; the client used "
          f"{service['client_cpu_ms_per_query']:.3f} CPU ms a query; load average {load_average}")
    if args.out:
        record = {"documents": args.documents, "qps": service["qps"], "p50_ms": service["p50_ms"],
                  "p99_ms": service["p99_ms"], "service": headline, "target_met": met,
                  "dul_search": {"documents": args.documents, **search},
                  "figures": figures, "runs": runs, "cpu": cpu_line(), "load_average_1_5_15_min": load_average,
                  "niceness": os.nice(0),
                  "command": "python benchmarks/search_service.py " + " ".join(sys.argv[1:]),
                  "params": {"documents": args.documents, "queries": args.queries, "clients": args.clients,
                             "repeats": args.repeats, "seed": args.seed, "workers": args.workers, "k": 10,
                             "radius": 2, "encoder": "-".join(map(str, SIZES)) + " (seeded random weights)"}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    sys.exit(main())
