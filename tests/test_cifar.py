"""Tests for components.data.cifar on tiny archives in the documented binary format.

Each archive is built here with ``tarfile``: records of label byte(s) then
3072 pixel bytes (R plane, G plane, B plane, each 32x32 row-major).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from components.data import cifar
from components.errors import DulError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A tar.gz of regular files ``name -> bytes`` (in dict order)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


def records(labels: np.ndarray, images: np.ndarray) -> bytes:
    """Label bytes (N, k) then each image (N, 32, 32, 3) HWC as R, G, B planes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return np.concatenate([labels.astype(np.uint8), planes], axis=1).tobytes()


def cifar10_members(sizes=(3, 2, 2, 1, 2), n_test=4, seed=0, names=CIFAR10_NAMES) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    members, truth = {}, {"train": ([], []), "test": ([], [])}
    files = [(f"data_batch_{i + 1}.bin", "train", n) for i, n in enumerate(sizes)] + [("test_batch.bin", "test", n_test)]
    for name, split, n in files:
        labels = rng.integers(0, 10, (n, 1))
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        members[f"cifar-10-batches-bin/{name}"] = records(labels, images)
        truth[split][0].append(labels[:, 0])
        truth[split][1].append(images)
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    return members, {split: (np.concatenate(a), np.concatenate(b)) for split, (a, b) in truth.items()}


def cifar100_members(n_train=5, n_test=3, seed=1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    members, truth = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.stack([rng.integers(0, 20, n), rng.integers(0, 100, n)], axis=1)
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        members[f"cifar-100-binary/{split}.bin"] = records(labels, images)
        truth[split] = (labels, images)
    members["cifar-100-binary/coarse_label_names.txt"] = "\n".join(f"coarse{i}" for i in range(20)).encode()
    members["cifar-100-binary/fine_label_names.txt"] = "\n".join(f"fine{i}" for i in range(100)).encode()
    return members, truth


def test_cifar10_reads_labels_names_and_hwc_images(tmp_path):
    members, truth = cifar10_members()
    path = tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    data = cifar.load_cifar10(path, expected_sha256=None, expected=None)
    assert data["label_names"] == CIFAR10_NAMES
    assert data["archive"] == {"name": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                               "verified": False}
    for split, n in (("train", 10), ("test", 4)):
        images, labels = data[split]["images"], data[split]["labels"]
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
        assert labels.dtype == np.int64 and labels.tolist() == truth[split][0].tolist()
        np.testing.assert_array_equal(images, truth[split][1])


def test_cifar10_pixel_layout_is_red_plane_then_green_then_blue(tmp_path):
    members, _ = cifar10_members(sizes=(1, 0, 0, 0, 0), n_test=1)
    pixels = np.zeros(3072, dtype=np.uint8)
    pixels[0], pixels[1024 + 33], pixels[2048 + 1023] = 10, 20, 30  # R at (0,0); G at (1,1); B at (31,31)
    members["cifar-10-batches-bin/data_batch_1.bin"] = bytes([7]) + pixels.tobytes()
    data = cifar.load_cifar10(tar_gz(tmp_path / "c.tar.gz", members), expected_sha256=None, expected=None)
    image = data["train"]["images"][0]
    assert data["train"]["labels"].tolist() == [7]
    assert (image[0, 0, 0], image[1, 1, 1], image[31, 31, 2]) == (10, 20, 30)
    assert int(image.sum()) == 60


def test_cifar10_checks_the_pinned_sha256_and_the_expected_counts(tmp_path):
    members, _ = cifar10_members()
    path = tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DulError, match=r"checksum mismatch: expected sha256 c4a38c50"):
        cifar.load_cifar10(path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert cifar.load_cifar10(path, expected_sha256=sha256, expected={"train": 10, "test": 4})["archive"]["verified"]
    with pytest.raises(DulError, match=r"10 train images, expected 50000; the archive is incomplete"):
        cifar.load_cifar10(path, expected_sha256=None)


def test_cifar100_reads_fine_and_coarse_labels(tmp_path):
    members, truth = cifar100_members()
    path = tar_gz(tmp_path / "cifar-100-binary.tar.gz", members)
    data = cifar.load_cifar100(path, expected_sha256=None, expected={"train": 5, "test": 3})
    assert len(data["label_names"]) == 100 and data["label_names"][42] == "fine42"
    assert data["coarse_label_names"] == [f"coarse{i}" for i in range(20)]
    for split in ("train", "test"):
        labels, images = truth[split]
        assert data[split]["labels"].tolist() == labels[:, 1].tolist()
        assert data[split]["coarse_labels"].tolist() == labels[:, 0].tolist()
        np.testing.assert_array_equal(data[split]["images"], images)


def test_a_truncated_batch_names_the_member_and_the_record_size(tmp_path):
    members, _ = cifar10_members()
    members["cifar-10-batches-bin/data_batch_3.bin"] += b"\x00" * 5  # 2 records + 5 bytes
    path = tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DulError) as caught:
        cifar.load_cifar10(path, expected_sha256=None, expected=None)
    assert str(caught.value) == (
        f"{path}/cifar-10-batches-bin/data_batch_3.bin: 6151 bytes is not a whole number of 3073-byte records;"
        " the archive is truncated, fetch it again"
    )


@pytest.mark.parametrize("which", [0, 1])
def test_cifar100_label_byte_out_of_range(tmp_path, which):
    members, _ = cifar100_members()
    data = bytearray(members["cifar-100-binary/test.bin"])
    data[3074 + which] = (20, 100)[which]  # record 1: coarse 20 of 20, or fine 100 of 100
    members["cifar-100-binary/test.bin"] = bytes(data)
    path = tar_gz(tmp_path / "c100.tar.gz", members)
    limit = (20, 100)[which]
    with pytest.raises(DulError, match=rf"test\.bin: record 1 has label byte {limit}, outside \[0, {limit}\)"):
        cifar.load_cifar100(path, expected_sha256=None, expected=None)


def test_a_missing_member_is_named(tmp_path):
    members, _ = cifar10_members()
    del members["cifar-10-batches-bin/data_batch_5.bin"]
    path = tar_gz(tmp_path / "c.tar.gz", members)
    with pytest.raises(DulError, match=r"member cifar-10-batches-bin/data_batch_5\.bin is missing"):
        cifar.load_cifar10(path, expected_sha256=None, expected=None)


def test_cifar100_train_member_over_64_mib_is_allowed_by_the_raised_limit():
    # 50,000 records of 3074 bytes: over archive's default per-member limit, under cifar's
    assert 50_000 * 3074 > 64 << 20 and 50_000 * 3074 < cifar.MAX_MEMBER_BYTES
