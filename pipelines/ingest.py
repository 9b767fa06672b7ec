"""Stage ingest: read the dataset named in params.yaml and write its splits.

Outputs data/prepared/{train,validation,test}.parquet and card.json (counts,
checksums, source). Default dataset: scikit-learn's bundled digits (no
download). mnist, fashion-mnist, cifar10 and cifar100 are images read from
ingest.source (a local file or folder, or a mirror URL) or the canonical
URLs, checked against pinned sha256; 20newsgroups, reuters21578 (ModApte,
ingest.topics) and rcv1-v2 (streamed, ingest.rcv1_split) become
bag-of-words counts over the ingest.vocabulary_size most frequent training
words, or (20newsgroups, ingest.representation: chars) each post's bytes, a
sequence for wavenet and n-gram models.
"""

from pathlib import Path

from components import tracking
from components.config import IngestParams, as_dict
from components.data import ingest
from pipelines._stage import entry, run

OUT = Path("data/prepared")


def work(params: IngestParams) -> None:
    with tracking.stage_run("ingest", as_dict(params)) as mlrun:
        card = ingest(params.dataset, OUT, source=params.source, validation_fraction=params.validation_fraction,
                      test_fraction=params.test_fraction, seed=params.seed,
                      vocabulary_size=params.vocabulary_size, remove=params.remove, topics=params.topics,
                      rcv1_split=params.rcv1_split, protocol=params.protocol,
                      representation=params.representation)
        mlrun.log_metrics({f"count_{split}": info["count"] for split, info in card["splits"].items()})
        mlrun.log_artifact(OUT / "card.json")
        mlrun.tag_files("outs", [OUT])
    counts = ", ".join(f"{split} {info['count']}" for split, info in card["splits"].items())
    print(f"ingest: {card['dataset']} -> {OUT} ({counts})")


main = entry("ingest", __doc__, work)

if __name__ == "__main__":
    run(main)
