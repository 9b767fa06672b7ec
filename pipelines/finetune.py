"""Stage finetune: unroll the RBM stack into a deep autoencoder and fine-tune it.

Backpropagation of the reconstruction cross-entropy (for Gaussian inputs:
squared error / 2 in standardised units, the stack's mean and std; the
reported squared errors are in the data's units), as a Ray Train job.
Writes models/autoencoder.pt ({"config", "state_dict"}: loadable with
torch.load(..., weights_only=True) and DeepAutoencoder.from_checkpoint),
reports/finetune/curve.csv (a DVC plot) and reports/finetune/metrics.json.
Registers the encoder in the MLflow model registry as dul-encoder (the
champion alias moves to it if its validation squared error is lower).
"""

from pathlib import Path

from components import tracking
from components.config import FinetuneParams, as_dict
from components.data import read_card
from components.models import registry
from components.io import content_key, file_md5, save_torch, write_csv, write_json
from components.tracking.registry import register_encoder
from components.training.finetune import finetune_autoencoder
from pipelines._stage import entry, run

DATA = Path("data/prepared")
STACK = Path("models/stack.pt")
OUT = Path("models/autoencoder.pt")
REPORTS = Path("reports/finetune")


def work(params: FinetuneParams) -> None:
    registry.read_checkpoint(STACK)  # a damaged or foreign stack.pt: one line, before Ray starts
    key = content_key(as_dict(params), read_card(DATA), file_md5(STACK))
    with tracking.stage_run("finetune", as_dict(params), deps=[DATA, STACK]) as mlrun:
        result = finetune_autoencoder(DATA, STACK, params, key=key)
        save_torch(OUT, result["checkpoint"])
        history = result["history"]
        write_csv(REPORTS / "curve.csv", history)
        metrics = kept_metrics(history, result["kept"])
        write_json(REPORTS / "metrics.json", metrics)
        mlrun.log_history(history, prefix="finetune_")
        mlrun.log_metrics(metrics)
        mlrun.log_artifact(OUT, "model")
        mlrun.tag_files("outs", [OUT])
        sizes = result["checkpoint"]["params"]["sizes"]
        registered = register_encoder(mlrun, OUT, n_inputs=sizes[0], code_size=sizes[-1],
                                      metric="valid_squared_error", value=metrics["valid_squared_error"])
    print(f"finetune: -> {OUT}; valid squared error {metrics['valid_squared_error']:.3f}; {registered.describe()}")
    if result["kept"]:
        print(f"finetune: {retrieval_verdict(metrics)}")


def retrieval_verdict(metrics: dict) -> str:
    """One plain sentence: did fine-tuning earn its time on retrieval (``keep: best_precision``)?"""
    before, after = metrics["pretrained_valid_precision_at_100"], metrics["valid_precision_at_100"]
    if metrics["kept_epoch"] == 0:
        return (f"fine-tuning did not improve retrieval: no epoch beat the pretrained net's validation "
                f"precision@100 of {before:.3f}, so the pretrained net is kept (finetune.epochs: 0 gives the same "
                "codes without the fine-tuning time)")
    return (f"fine-tuning raised validation precision@100 from {before:.3f} (the pretrained net) to {after:.3f} "
            f"(epoch {metrics['kept_epoch']}, kept)")


def kept_metrics(history: list[dict], kept: dict | None) -> dict:
    """The figures of the epoch whose net is saved: the last, or with ``keep:
    best_precision`` the kept one (epoch 0, the net before fine-tuning, has no
    training figures)."""
    epoch = kept["epoch"] if kept else history[-1]["epoch"]
    row = next((r for r in history if r["epoch"] == epoch), {})
    metrics = {k: row[k] for k in ("train_loss", "train_squared_error", "valid_squared_error") if k in row}
    if kept:
        before = kept.get("pretrained_precision_at_100", float("nan"))
        metrics |= {"kept_epoch": epoch, "valid_precision_at_100": kept["precision_at_100"],
                    "valid_squared_error": kept["valid_squared_error"], "pretrained_valid_precision_at_100": before,
                    "finetune_precision_gain": kept["precision_at_100"] - before}
    return metrics


main = entry("finetune", __doc__, work)

if __name__ == "__main__":
    run(main)
