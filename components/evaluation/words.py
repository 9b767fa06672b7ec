"""Pictures of word-count models, drawn as tables of words.

For a document model the "filters" of the first layer are best read as the
words each hidden unit weights most (topic-like: Salakhutdinov & Hinton 2009
show such lists for the replicated softmax), a reconstruction as the words
it expects most next to the document's own most frequent words, and a
sample of the DBN as the words its sampled rates favour.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.evaluation import _save  # noqa: E402


def top_words(weights: np.ndarray, vocabulary: list[str], k: int = 8) -> list[str]:
    """For each row of ``weights`` (N, V), its k largest entries' words, largest first, as one line."""
    order = np.argsort(-np.asarray(weights), axis=1, kind="stable")[:, :k]
    return [" ".join(vocabulary[j] for j in row) for row in order]


def word_table_figure(path: str | Path, columns: dict[str, list[str]], title: str) -> None:
    """A figure of text: one column of lines per entry of ``columns`` (same length)."""
    n = max(len(lines) for lines in columns.values())
    fig, axes = plt.subplots(1, len(columns), figsize=(6 * len(columns), 0.26 * n + 0.9), squeeze=False)
    for ax, (heading, lines) in zip(axes[0], columns.items()):
        ax.set_axis_off()
        ax.set_title(heading, fontsize=9, loc="left")
        for row, line in enumerate(lines):
            ax.text(0, 1 - (row + 0.5) / n, line, fontsize=8, family="monospace", va="center",
                    transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
