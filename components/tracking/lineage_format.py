"""The readable tree that ``dul lineage`` prints (``lineage.lineage`` builds the document)."""

from __future__ import annotations

from components.tracking import _flatten


def format_tree(doc: dict) -> str:
    """The lineage as a readable tree, the target at the top."""
    git = doc["git"]
    commit = (git["dvc_lock_commit"] or "none (dvc.lock not committed)")[:12]
    state = ", dvc.lock modified since" if git["dvc_lock_modified"] else ""
    state += ", working tree differs" if git["dirty"] else ""
    lines = [f"lineage of {doc['target']}  (dvc.lock at commit {commit}{state})"]
    if doc["mlflow"]["note"]:
        lines.append(f"note: {doc['mlflow']['note']}")
    nodes = {node["path"]: node for node in doc["nodes"]}
    seen: set[str] = set()
    roots = [n["path"] for n in doc["nodes"] if not any(n["path"] in m["upstream"] for m in doc["nodes"])]
    for path in roots:
        _tree(nodes, path, "", "", seen, lines)
    if doc["verified"] is not None:
        lines.append("verify: ok, every artifact matches dvc.lock" if doc["verified"]
                     else f"verify: FAILED, {len(doc['problems'])} problem(s):")
        lines += [f"  {problem}" for problem in doc["problems"]]
    return "\n".join(lines)


def _tree(nodes: dict, path: str, head: str, body: str, seen: set[str], lines: list[str]) -> None:
    node = nodes[path]
    status = f"  [{node['verify']['status']}]" if node["verify"] else ""
    if path in seen:
        lines.append(f"{head}{path}  (see above)")
        return
    seen.add(path)
    lines.append(f"{head}{path}  md5 {node['md5'] or '(none in dvc.lock)'}{status}")
    bar = "│   " if node["upstream"] else "    "
    lines += [f"{body}{bar}{line}" for line in _details(node)]
    for i, up in enumerate(node["upstream"]):
        last = i == len(node["upstream"]) - 1
        _tree(nodes, up, body + ("└── " if last else "├── "), body + ("    " if last else "│   "), seen, lines)


def _details(node: dict) -> list[str]:
    out = [f"note: {node['note']}"] if node["note"] else []
    out.append(f"stage {node['stage']}: {node['cmd'] or '(data source: dvc add/import)'}")
    params = {f"{k}" if file == "params.yaml" else f"{file}:{k}": v
              for file, values in node["params"].items() for k, v in _flatten(values).items()}
    if params:
        out.append("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if node["inputs"]:
        out.append(f"inputs: {', '.join(node['inputs'])}")
    for run in node["mlflow_runs"][:5]:
        commit = (run["git_commit"] or "?")[:12]
        out.append(f"mlflow run {run['run_id']} ({run['run_name']}, {run['status']}, commit {commit})")
    if len(node["mlflow_runs"]) > 5:
        out.append(f"… and {len(node['mlflow_runs']) - 5} older mlflow runs with the same output")
    card = node["card"]
    if card:
        label = card["error"] if "error" in card else f"{card['dataset']} from {card['source']}"
        out.append(f"card: {label}")
        for f in card.get("files", []):
            pinned = "pinned, verified" if f.get("verified") else "NOT verified against a pinned hash"
            out.append(f"  {f['name']}: sha256 {f['sha256']} {pinned}")
    return out
