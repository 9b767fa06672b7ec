"""The params file itself: whatever is wrong with it is one line naming the file, never a traceback."""

import os
import re
from pathlib import Path

import pytest

from components.config import MAX_PARAMS_BYTES, load_params
from components.errors import DulError
from pipelines import ingest


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("text, message", [
    ("pretrain:\n  epochs: 3\npretrain:\n  epochs: 4\n",
     r"at line 3, column 1: key 'pretrain' appears twice in one mapping \(first on line 1\); keep one$"),
    ("pretrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n",
     r"at line 4, column 3: key 'epochs' appears twice in one mapping \(first on line 2\)"),
    ("pretrain: {epochs: 3, epochs: 4}\n", r"at line 1, column 23: key 'epochs' appears twice"),
    ("sweep:\n  space:\n    lr: {loguniform: [0.1, 1], loguniform: [1, 2]}\n",
     r"at line 3, column 32: key 'loguniform' appears twice in one mapping \(first on line 3\)"),
])
def test_a_repeated_key_at_any_depth_is_an_error_naming_it_and_its_line(tmp_path, text, message):
    path = _write(tmp_path / "params.yaml", text)
    with pytest.raises(DulError, match=rf"^{re.escape(str(path))}: not valid YAML {message}"):
        load_params("pretrain", path)


def test_a_key_may_override_one_merged_in(tmp_path):
    path = _write(tmp_path / "params.yaml", "pretrain:\n  <<: {epochs: 3, lr: 0.5}\n  epochs: 4\n")
    params = load_params("pretrain", path)
    assert (params.epochs, params.lr) == (4, 0.5)


def test_text_that_is_not_utf8_names_the_byte(tmp_path):
    path = _write(tmp_path / "params.yaml", "pretrain:\n  # caf\xe9\n  epochs: 3\n".encode("latin-1"))
    message = r": not UTF-8 text: byte 17 \(line 2\) is 0xe9; save the file as UTF-8$"
    with pytest.raises(DulError, match=rf"^{re.escape(str(path))}{message}"):
        load_params("pretrain", path)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(DulError, match=rf"^{re.escape(str(tmp_path))} is a directory, not a params file"):
        load_params("pretrain", tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_refused_before_it_is_read():
    with pytest.raises(DulError, match=r"^/dev/zero is not a regular file"):
        load_params("pretrain", "/dev/zero")


@pytest.mark.timeout(10)  # opening a FIFO waits for a writer forever
def test_a_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "params.yaml")
    with pytest.raises(DulError, match=r"params\.yaml is not a regular file"):
        load_params("pretrain", tmp_path / "params.yaml")


def test_a_file_over_the_limit_is_refused(tmp_path):
    path = _write(tmp_path / "params.yaml", b"#" * (MAX_PARAMS_BYTES + 1))
    message = rf" is {MAX_PARAMS_BYTES + 1} bytes, too large for a params file"
    with pytest.raises(DulError, match=rf"^{re.escape(str(path))}{message}"):
        load_params("pretrain", path)


@pytest.mark.parametrize("text", ["- pretrain\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path, text):
    path = _write(tmp_path / "params.yaml", text)
    with pytest.raises(DulError, match=r"expected a mapping of stage sections at the top level"):
        load_params("pretrain", path)


def test_nesting_too_deep_for_the_parser_is_one_line(tmp_path):
    path = _write(tmp_path / "params.yaml", "[" * 50_000 + "]" * 50_000)
    with pytest.raises(DulError, match=r"nested too deeply"):
        load_params("pretrain", path)


@pytest.mark.parametrize("make", [
    lambda tmp: _write(tmp / "params.yaml", "ingest:\n  seed: 1\n  seed: 2\n"),
    lambda tmp: _write(tmp / "params.yaml", b"ingest:\n  source: \xff\n"),
    lambda tmp: tmp,
    lambda tmp: Path("/dev/zero"),
    lambda tmp: _write(tmp / "params.yaml", b"#" * (MAX_PARAMS_BYTES + 1)),
], ids=["repeated key", "not utf-8", "directory", "device", "too large"])
def test_a_stage_reports_a_bad_params_file_in_one_line(tmp_path, capsys, make):
    path = make(tmp_path)
    assert ingest.main(["--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}"), err
