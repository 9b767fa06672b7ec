"""benchmarks/wavenet_20ng.py end to end on a tiny bydate archive: the character ingest,
Kneser-Ney chosen by validation order, a toy WaveNet trained in this process (no Ray),
both scored on the same test bytes, the JSON with its params; and --source / --device,
which the GPU machine needs (no ../shared there, the archive is carried)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from tests.test_chars import _pinned
from tests.test_corpora import _archive

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import wavenet_20ng  # noqa: E402

WORDS = "the disk drive spins and the car engine runs while the wheel turns round".split()


def tiny_archive(tmp_path: Path, monkeypatch) -> Path:
    """A bydate archive of 24 short posts (18 training, 6 test), pinned as the real one."""
    posts = {f"20news-bydate-{split}/{group}/{i}": "Subject: s\n\n" + " ".join(
        WORDS[(i * 7 + j) % len(WORDS)] for j in range(60)) + "\n"
        for i in range(24) for split, group in [("train" if i < 18 else "test", ("comp.a", "rec.b")[i % 2])]}
    archive = _archive(tmp_path / "20news-bydate.tar.gz", posts)
    _pinned(monkeypatch, archive)
    return archive


def test_the_benchmark_scores_both_models_on_the_same_test_bytes(tmp_path, monkeypatch, one_thread, capsys):
    archive = tiny_archive(tmp_path, monkeypatch)
    params = yaml.safe_load((REPO / "docs/results/wavenet-20ng/params.yaml").read_text())
    params["ingest"]["source"] = "/nowhere/20news-bydate"  # --source wins
    params["wavenet"] = {"channels": 4, "skip_channels": 4, "head": 8, "blocks": 1, "layers": 3, "epochs": 2,
                         "steps": 3, "batch_size": 2, "window": 32, "lr": 0.01, "valid_chars": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "wavenet.json"
    monkeypatch.setattr(sys, "argv", ["wavenet_20ng.py", "--params", str(tmp_path / "params.yaml"), "--data",
                                      str(tmp_path / "prepared"), "--orders", "2", "3", "--source", str(archive),
                                      "--device", "cpu", "--out", str(out)])
    assert wavenet_20ng.main() == 0
    result = json.loads(out.read_text())
    wavenet, kn = result["rows"]
    assert wavenet["model"] == "wavenet" and wavenet["receptive_field"] == 9 and wavenet["epoch_kept"] in (1, 2)
    assert kn["model"] in ("kneser-ney-2", "kneser-ney-3") and set(kn["valid_bits_per_char_by_order"]) == {"2", "3"}
    assert 0 < kn["bits_per_char"] < 8 and 0 < wavenet["bits_per_char"] < 9
    assert result["wavenet_beats_kneser_ney"] == (wavenet["bits_per_char"] < kn["bits_per_char"])
    assert result["test"]["posts"] == 6 and result["test"]["bytes_scored"] == result["test"]["bytes_in_split"]
    assert result["reduced"] is True and "1 torch thread" in result["reduced_what"]
    assert result["params"]["wavenet"]["channels"] == 4 and len(result["validation_curve"]) == 2
    assert (tmp_path / "wavenet.pt").exists()


def test_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wavenet_20ng.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["wavenet_20ng.py", "--device", "cuda", "--out", str(tmp_path / "w.json")])
    assert wavenet_20ng.main() == 2
    assert "--device cuda but torch sees no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "w.json").exists()


def test_a_cut_training_goes_on_from_its_checkpoints(tmp_path, monkeypatch, one_thread, capsys):
    """--checkpoints: training killed after epoch 1 and rerun keeps the same best epoch and
    weights as an uninterrupted run (the GPU machine's calls are 10 minutes each)."""
    import pytest
    import torch

    from components.config import load_family_params
    from components.data import ingest

    def wavenet_params(**changes):
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({"zoo": {"families": ["wavenet"]}, "wavenet": {
            "channels": 4, "skip_channels": 4, "head": 8, "blocks": 1, "layers": 3, "epochs": 3, "steps": 3,
            "batch_size": 2, "window": 32, "lr": 0.01, "valid_chars": 0, **changes}}))
        return load_family_params("wavenet", tmp_path / "p.yaml")

    posts = {f"20news-bydate-{split}/{group}/{i}": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(80)) + "\n"
             for i in range(20) for split, group in [("train" if i < 16 else "test", ("comp.a", "rec.b")[i % 2])]}
    archive = _archive(tmp_path / "20news-bydate.tar.gz", posts)
    _pinned(monkeypatch, archive)
    ingest("20newsgroups", tmp_path / "chars", source=str(archive), representation="chars", validation_fraction=0.25)
    params = wavenet_params()
    whole, trained = wavenet_20ng.train_wavenet(tmp_path / "chars", params, torch.device("cpu"))

    class Killed(Exception):
        pass

    real_save = wavenet_20ng.KeepBest.save

    def killed_after_one_epoch(self, state, row):
        real_save(self, state, row)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(wavenet_20ng.KeepBest, "save", killed_after_one_epoch)
        with pytest.raises(Killed):
            wavenet_20ng.train_wavenet(tmp_path / "chars", params, torch.device("cpu"), tmp_path / "ck")
    assert (tmp_path / "ck/best.pt").exists() and (tmp_path / "ck/params.json").exists()
    capsys.readouterr()
    resumed, again = wavenet_20ng.train_wavenet(tmp_path / "chars", params, torch.device("cpu"), tmp_path / "ck")
    printed = capsys.readouterr().out
    assert "wavenet: resuming after epoch 1 in" in printed and printed.count("valid_bits_per_char") == 2
    assert again["history"] == trained["history"] and again["epoch_kept"] == trained["epoch_kept"]
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(wavenet_20ng.DulError, match=r"trained with other params for wavenet \(lr: 0.01 now 0.02\)"):
        wavenet_20ng.train_wavenet(tmp_path / "chars", wavenet_params(lr=0.02), torch.device("cpu"), tmp_path / "ck")


def test_bfloat16_against_float32_side_by_side_and_refused_where_emulated(tmp_path, monkeypatch, one_thread, capsys):
    import torch
    import wavenet_bf16

    from components.data import ingest
    ingest("20newsgroups", tmp_path / "prepared", source=str(tiny_archive(tmp_path, monkeypatch)),
           representation="chars")
    params = {"zoo": {"families": ["wavenet"]},
              "wavenet": {"channels": 4, "skip_channels": 4, "head": 8, "blocks": 1, "layers": 3, "batch_size": 2,
                          "window": 32, "lr": 0.01, "valid_chars": 0, "lr_decay": True}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "prepared"), "--steps", "3",
            "--threads", "1", "--out", str(tmp_path / "bf16.json")]
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # any CPU runs the arithmetic
    assert wavenet_bf16.main(argv) == 0
    result = json.loads((tmp_path / "bf16.json").read_text())
    bf16, fp32 = result["rows"]
    assert (bf16["matmul_dtype"], fp32["matmul_dtype"]) == ("bfloat16", "float32")
    assert 0 < fp32["valid_bits_per_char"] < 9 and bf16["valid_bits_per_char"] != fp32["valid_bits_per_char"]
    assert result["speed_ratio"] == round(bf16["bytes_per_second"] / fp32["bytes_per_second"], 2)
    assert result["params"]["wavenet"]["channels"] == 4 and "CPU:" in capsys.readouterr().out
    (tmp_path / "bf16.json").unlink()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert wavenet_bf16.main(argv) == 2
    assert "wavenet.matmul_dtype: bfloat16 would be slow here" in capsys.readouterr().err
    assert wavenet_bf16.main([*argv[:2], "--data", str(tmp_path / "nowhere"), *argv[4:]]) == 2
    assert "holds no character ingest" in capsys.readouterr().err
    assert not (tmp_path / "bf16.json").exists()


def test_a_warm_restart_starts_from_the_kept_weights_and_refuses_another_net(tmp_path, monkeypatch, one_thread):
    """--init: the net starts from an earlier run's kept weights (a rate of 1e-12 leaves them as they
    were, where a fresh start does not); a checkpoint of other widths, of another family, or none,
    is one line naming it."""
    import pytest
    import torch

    from components.config import load_family_params
    from components.data import ingest
    from components.io import save_torch

    def wavenet_params(**changes):
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({"zoo": {"families": ["wavenet"]}, "wavenet": {
            "channels": 4, "skip_channels": 4, "head": 8, "blocks": 1, "layers": 3, "epochs": 1, "steps": 3,
            "batch_size": 2, "window": 32, "lr": 0.01, "valid_chars": 0, **changes}}))
        return load_family_params("wavenet", tmp_path / "p.yaml")

    archive = tiny_archive(tmp_path, monkeypatch)
    ingest("20newsgroups", tmp_path / "chars", source=str(archive), representation="chars", validation_fraction=0.25)
    first, _ = wavenet_20ng.train_wavenet(tmp_path / "chars", wavenet_params(seed=3), torch.device("cpu"))
    save_torch(tmp_path / "first.pt", first.to_checkpoint())
    still = wavenet_params(lr=1e-12)
    warm, trained = wavenet_20ng.train_wavenet(tmp_path / "chars", still, torch.device("cpu"), tmp_path / "ck",
                                               init=tmp_path / "first.pt")
    fresh, _ = wavenet_20ng.train_wavenet(tmp_path / "chars", still, torch.device("cpu"))
    a, b, c = first.state_dict(), warm.state_dict(), fresh.state_dict()
    assert all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)
    assert not all(torch.allclose(a[key], c[key], atol=1e-6) for key in a)
    assert json.loads((tmp_path / "ck/params.json").read_text())["init"] == str(tmp_path / "first.pt")

    with pytest.raises(wavenet_20ng.DulError, match=r"is another net than the params' \(channels: 4 there, 8 here\)"):
        wavenet_20ng.train_wavenet(tmp_path / "chars", wavenet_params(channels=8), torch.device("cpu"),
                                   init=tmp_path / "first.pt")
    save_torch(tmp_path / "made.pt", {"family": "made", "params": {}, "state_dict": {}})
    with pytest.raises(wavenet_20ng.DulError, match=r"holds a made checkpoint, not a wavenet one"):
        wavenet_20ng.train_wavenet(tmp_path / "chars", still, torch.device("cpu"), init=tmp_path / "made.pt")
    with pytest.raises(wavenet_20ng.DulError, match=r"no such file"):
        wavenet_20ng.train_wavenet(tmp_path / "chars", still, torch.device("cpu"), init=tmp_path / "none.pt")
    monkeypatch.setattr(sys, "argv", ["wavenet_20ng.py", "--data", str(tmp_path / "chars"), "--init",
                                      str(tmp_path / "wavenet.pt"), "--out", str(tmp_path / "w.json")])
    assert wavenet_20ng.main() == 2 and not (tmp_path / "w.json").exists()
