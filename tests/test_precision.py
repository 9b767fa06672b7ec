"""bfloat16 CD products run only where the hardware has bf16 units; elsewhere one line says why."""

import pytest
import torch

from components.config import parse_section
from components.errors import DulError
from components.training import pretrain

BF16 = parse_section("pretrain", {"matmul_dtype": "bfloat16"})


def test_an_avx2_only_cpu_refuses_bfloat16(monkeypatch):
    monkeypatch.setattr(pretrain, "cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
    with pytest.raises(DulError, match=r"pretrain.matmul_dtype: bfloat16 would be slow here: this CPU has neither "
                                       r"AVX-512 BF16 nor AMX.*use float32"):
        pretrain.check_matmul_dtype(BF16, torch.device("cpu"))


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_a_cpu_with_bf16_units_runs_it(monkeypatch, flag):
    monkeypatch.setattr(pretrain, "cpu_flags", lambda: {"avx2", flag})
    pretrain.check_matmul_dtype(BF16, torch.device("cpu"))


def test_float32_runs_anywhere(monkeypatch):
    monkeypatch.setattr(pretrain, "cpu_flags", lambda: set())
    pretrain.check_matmul_dtype(parse_section("pretrain", {}), torch.device("cpu"))


def test_an_unreadable_cpuinfo_refuses_bfloat16(monkeypatch):
    monkeypatch.setattr(pretrain, "cpu_flags", lambda: None)
    with pytest.raises(DulError, match="could not be read"):
        pretrain.check_matmul_dtype(BF16, torch.device("cpu"))


def test_this_machine_reads_its_flags():
    flags = pretrain.cpu_flags()
    assert flags is None or "fpu" in flags or any(f.startswith(("sse", "neon", "asimd")) for f in flags)
