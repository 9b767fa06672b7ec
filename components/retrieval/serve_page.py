"""The one web page ``dul serve`` answers at /: a query box over GET /api/search.

The script builds every result with ``textContent`` and ``<mark>`` elements,
never ``innerHTML``: a title is text whatever it holds. The page's query
(``?q=...`` or ``?doc=...``, with ``k`` and ``radius``) is in its address, so a
search can be linked to and reloaded. ``PAGE_HEADERS`` allow this page's one
inline script (by its hash) and nothing from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib

SCRIPT = """
const form = document.getElementById("search");
const results = document.getElementById("results");
const summary = document.getElementById("summary");

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function hitItem(hit) {
  const item = element("li", undefined, "hit");
  const title = element("a", undefined, "title");
  title.href = hit.link;
  for (const [text, matched] of hit.title_parts) {
    title.appendChild(matched ? element("mark", text) : document.createTextNode(text));
  }
  if (!hit.title) title.appendChild(document.createTextNode(hit.id));
  item.appendChild(title);
  const score = hit.score === null ? "" : ", TF-IDF " + hit.score.toFixed(3);
  const facts = element("div", hit.id + " \\u00b7 " + hit.label + " \\u00b7 Hamming " + hit.distance + score, "facts");
  const similar = element("a", "similar", "similar");
  similar.href = "?" + new URLSearchParams({doc: hit.id, k: form.k.value});
  facts.append(" \\u00b7 ", similar);
  item.appendChild(facts);
  return item;
}

async function run(params) {
  results.replaceChildren();
  summary.className = "";
  summary.textContent = "searching\\u2026";
  const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== ""));
  history.replaceState(null, "", "?" + query);
  try {
    const answer = await fetch("/api/search?" + query);
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || answer.statusText);
    const words = body.words.length ? " for words " + body.words.join(", ") : "";
    summary.textContent = body.hits.length + " results of " + body.documents + " documents" + words +
      " in " + body.latency_ms.toFixed(1) + " ms (shortlist: " + body.method + ")";
    results.replaceChildren(...body.hits.map(hitItem));
  } catch (error) {
    summary.className = "error";
    summary.textContent = "error: " + error.message;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  run({q: form.q.value, k: form.k.value, radius: form.radius.value});
});

const start = new URLSearchParams(location.search);
for (const name of ["q", "k", "radius"]) if (start.has(name)) form[name].value = start.get(name);
if (start.has("doc")) run({doc: start.get("doc"), k: form.k.value});
else if (start.get("q")) run({q: form.q.value, k: form.k.value, radius: form.radius.value});
"""

STYLE = """
body { font: 16px/1.4 system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; }
form { display: flex; gap: .5rem; flex-wrap: wrap; }
input[name=q] { flex: 1; min-width: 15rem; font-size: 1.1rem; }
input[type=number] { width: 4.5rem; }
#summary { color: #555; margin: 1rem 0; }
#summary.error { color: #b00; }
.hit { margin-bottom: .8rem; }
.facts { color: #555; font-size: .9rem; }
mark { background: #ffe066; }
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dul search</title>
<style>{STYLE}</style>
</head>
<body>
<h1>dul search</h1>
<form id="search">
  <input name="q" type="search" placeholder="space shuttle launch" autofocus aria-label="query">
  <label>k <input name="k" type="number" min="1" max="1000" value="10"></label>
  <label>radius <input name="radius" type="number" min="0" placeholder="2"></label>
  <button type="submit">Search</button>
</form>
<div id="summary" role="status"></div>
<ol id="results"></ol>
<script>{SCRIPT}</script>
</body>
</html>
""".encode()

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
PAGE_HEADERS = {
    "Content-Security-Policy": f"default-src 'self'; script-src 'sha256-{_SCRIPT_HASH}'; "
                               "style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}
