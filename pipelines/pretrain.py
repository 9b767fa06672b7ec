"""Stage pretrain: greedy layer-wise pretraining of an RBM stack with CD-k.

Reads data/prepared, trains one RBM per entry of pretrain.hidden (the top one
with linear code units by default) as a Ray Train job, and writes
models/stack.pt (layer weights + config; with ``visible_units: gaussian``
also the training split's per-feature mean and std, which standardise the
inputs here and in every later stage), reports/pretrain/curve.csv (a DVC
plot) and reports/pretrain/metrics.json (a Gaussian layer 1's error is in
standardised units). A rerun after a crash resumes from
the last finished epoch (Ray Train checkpoints under ray_results/).
"""

from pathlib import Path

from components import tracking
from components.config import PretrainParams, as_dict
from components.data import read_card
from components.io import content_key, save_torch, write_csv, write_json
from components.training.pretrain import pretrain_stack
from pipelines._stage import entry, run

DATA = Path("data/prepared")
OUT = Path("models/stack.pt")
REPORTS = Path("reports/pretrain")


def work(params: PretrainParams) -> None:
    card = read_card(DATA)
    with tracking.stage_run("pretrain", as_dict(params), deps=[DATA]) as mlrun:
        result = pretrain_stack(DATA, params, key=content_key(as_dict(params), card))
        n_visible = result["layers"][0]["W"].shape[0]
        config = {"model": "rbm-stack", "sizes": [n_visible, *params.hidden], "code_units": params.code_units,
                  "visible_units": result["layers"][0]["visible_type"], "layer_model": params.layer_model,
                  "dataset": card["dataset"], "shape": card.get("image_shape")}
        save_torch(OUT, {"config": config, **{k: result[k] for k in ("layers", "standardise") if k in result}})
        history = result["history"]
        write_csv(REPORTS / "curve.csv", [{"step": i, **row} for i, row in enumerate(history, start=1)])
        metrics = {f"layer{row['layer']}_recon_error": row["recon_error"]
                   for row in history if row["epoch"] == params.epochs}
        write_json(REPORTS / "metrics.json", metrics)
        mlrun.log_history(history, prefix="pretrain_")
        mlrun.log_metrics(metrics)
        mlrun.log_artifact(OUT, "model")
        mlrun.tag_files("outs", [OUT])
    print(f"pretrain: {'-'.join(map(str, config['sizes']))} stack -> {OUT}; " +
          ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


main = entry("pretrain", __doc__, work)

if __name__ == "__main__":
    run(main)
