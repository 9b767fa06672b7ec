"""Outputs that belong together appear together: index/codes.npz and index/search
come from the same run, or neither is replaced (io.atomic_paths)."""

import errno
import os

import pytest

from components import io
from components.errors import DulError
from pipelines import index as index_stage
from tests.test_search import index_stage_inputs


def snapshot(*roots) -> dict[str, bytes]:
    """Every file under ``roots`` (files or folders), by path, with its bytes."""
    files = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            files[str(path)] = path.read_bytes()
    return files


@pytest.fixture
def old(tmp_path):
    """A file and a folder already in place, as a previous run left them."""
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "meta.json").write_text("old meta\n")
    (tmp_path / "codes.npz").write_bytes(b"old codes")
    return tmp_path


def write_both(codes, search):
    codes.write_bytes(b"new codes")
    search.mkdir()
    (search / "meta.json").write_text("new meta\n")


def test_both_are_replaced_once_both_are_written(old):
    with io.atomic_paths(old / "codes.npz", old / "search") as (codes, search):
        write_both(codes, search)
        assert snapshot(old / "codes.npz", old / "search") == {str(old / "codes.npz"): b"old codes",
                                                               str(old / "search" / "meta.json"): b"old meta\n"}
    assert (old / "codes.npz").read_bytes() == b"new codes" and (old / "search" / "meta.json").read_text() == "new meta\n"
    assert sorted(p.name for p in old.iterdir()) == ["codes.npz", "search"]  # no temporaries


@pytest.mark.parametrize("error, raised", [(OSError(errno.ENOSPC, "No space left on device"), DulError),
                                           (OSError(errno.EDQUOT, "Disk quota exceeded"), DulError),
                                           (RuntimeError("file write failed"), RuntimeError),
                                           (KeyboardInterrupt(), KeyboardInterrupt)])
def test_a_failure_while_writing_touches_no_target(old, error, raised):
    before = snapshot(old)
    with pytest.raises(raised) as failure, io.atomic_paths(old / "codes.npz", old / "search") as (codes, search):
        codes.write_bytes(b"new codes")
        raise error
    assert snapshot(old) == before and sorted(p.name for p in old.iterdir()) == ["codes.npz", "search"]
    if raised is DulError:
        reason = "no space left on device" if error.errno == errno.ENOSPC else "disk quota exceeded"
        assert str(failure.value) == (f"{reason} while writing {old / 'codes.npz'}, {old / 'search'}; "
                                      "nothing was replaced: free some space and rerun")


def test_no_space_raised_through_another_error_is_named(old):
    with pytest.raises(DulError, match="^no space left on device while writing"):
        with io.atomic_paths(old / "codes.npz") as (codes,):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as err:
                raise RuntimeError("PytorchStreamWriter failed writing file data/0") from err


def test_a_failed_move_puts_the_old_targets_back(old, monkeypatch):
    before = snapshot(old)
    real, moves = os.replace, []

    def replace(source, target):
        moves.append((source, target))
        if len(moves) == 4:  # codes set aside and replaced, search set aside: its move fails
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="cross-device"):
        with io.atomic_paths(old / "codes.npz", old / "search") as (codes, search):
            write_both(codes, search)
    assert len(moves) > 4 and snapshot(old) == before
    assert sorted(p.name for p in old.iterdir()) == ["codes.npz", "search"]


def test_a_path_left_unwritten_is_a_bug_and_replaces_nothing(old):
    before = snapshot(old)
    with pytest.raises(ValueError, match="nothing was written for .*search"):
        with io.atomic_paths(old / "codes.npz", old / "search") as (codes, _):
            codes.write_bytes(b"new codes")
    assert snapshot(old) == before


def test_the_index_stage_out_of_space_keeps_the_previous_outputs(workdir, monkeypatch, capsys):
    index_stage_inputs(workdir)
    assert index_stage.main(["--params", "params.yaml"]) == 0
    before = snapshot(workdir / "index")
    assert set(before) >= {str(workdir / "index/codes.npz"), str(workdir / "index/search/meta.json")}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    index_stage_inputs(workdir, seed=1)  # another model: the codes would differ
    monkeypatch.setattr(index_stage, "write_search_index", full)
    capsys.readouterr()
    assert index_stage.main(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: no space left on device while writing index/codes.npz, index/search; nothing was "
                   "replaced: free some space and rerun\n")
    assert snapshot(workdir / "index") == before  # byte-identical, and no temporaries beside them
    assert sorted(p.name for p in (workdir / "index").iterdir()) == ["codes.npz", "search"]


def test_index_on_a_family_without_codes_is_one_line_exit_2_and_writes_nothing(workdir, capsys):
    """NADE is a density, not an Encoder: index names the family and what it lacks."""
    from components.io import save_torch
    from components.models.nade import NADE
    from tests.conftest import write_params

    index_stage_inputs(workdir)
    save_torch(workdir / "models/zoo/nade.pt", NADE(24, 5).to_checkpoint())
    write_params(workdir, {"index": {"model": "models/zoo/nade.pt"}})
    capsys.readouterr()
    assert index_stage.main(["--params", "params.yaml"]) == 2
    assert capsys.readouterr().err == (
        "error: index: models/zoo/nade.pt holds a nade model, which has no codes (no encode); index.model needs a "
        "family with codes, e.g. models/autoencoder.pt or models/zoo/nash.pt\n")
    assert not (workdir / "index").exists() and not (workdir / "reports/index").exists()
