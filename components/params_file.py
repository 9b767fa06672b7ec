"""Reading a params file safely: a regular UTF-8 file of at most ``MAX_PARAMS_BYTES``
(``/dev/zero``, a FIFO or a huge file is refused before it is read), YAML with
no key given twice in one mapping. Every problem is a one-line ``DulError``
naming the file (and the line)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from components.errors import DulError

MAX_PARAMS_BYTES = 1 << 20  # a params file is a few KiB; refuse anything larger before reading it


def read_yaml(path: Path):
    """The YAML document of the params file at ``path``."""
    return _parse_yaml(_params_text(path), path)


def _params_text(path: Path) -> str:
    """The text of the params file, refused unless it is a regular UTF-8 file of at most MAX_PARAMS_BYTES."""
    try:
        _check_params_stat(path, path.stat())
        with open(path, "rb") as file:
            data = file.read(MAX_PARAMS_BYTES + 1)
    except FileNotFoundError:
        raise DulError(f"{path}: params file not found (run from the repository root)") from None
    except OSError as err:
        raise DulError(f"{path}: cannot read the params file: {err.strerror or err}") from None
    if len(data) > MAX_PARAMS_BYTES:  # it grew after the check
        raise DulError(f"{path} is over {MAX_PARAMS_BYTES} bytes, too large for a params file; pass params.yaml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DulError(f"{path}: not UTF-8 text: byte {err.start} (line {line}) is 0x{data[err.start]:02x};"
                       " save the file as UTF-8") from None


def _check_params_stat(path: Path, info: os.stat_result) -> None:
    """Refuse what is no params file before reading it: /dev/zero or a FIFO never ends, a huge file fills memory."""
    if stat.S_ISDIR(info.st_mode):
        raise DulError(f"{path} is a directory, not a params file; pass the params.yaml inside it")
    if not stat.S_ISREG(info.st_mode):
        raise DulError(f"{path} is not a regular file (a device, FIFO or socket); pass a params.yaml file")
    if info.st_size > MAX_PARAMS_BYTES:
        raise DulError(f"{path} is {info.st_size} bytes, too large for a params file"
                       f" (at most {MAX_PARAMS_BYTES}); pass params.yaml")


def _parse_yaml(text: str, path: Path):
    """The YAML document in ``text``; a syntax error or a repeated key is a DulError with its line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DulError(f"{path}: not valid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise DulError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise DulError(f"{path}: not valid YAML: nested too deeply for a params file") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, at any depth.

    Plain PyYAML keeps the last value silently. A key that overrides one
    merged in with ``<<`` is allowed, as YAML intends.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}  # key -> the node that gave it first
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                line = first.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {line}); keep one",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)
