"""The imports point down the layers (docs/architecture.md), as experiments/import_layers.py reads them."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_layers", ROOT / "experiments" / "import_layers.py")
layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layers)


def test_no_import_runs_up_no_circle_no_local_rlgen_import():
    report = layers.report(ROOT)
    assert report["against_layers"] == []
    assert report["package_circles"] == [] and report["file_circles"] == []
    # the one lazy import: rlgen.load, so that `import rlgen` (and `rlgen --version`) loads no torch
    assert all(item.startswith("rlgen/__init__.py:") and item.endswith("-> rlgen.loading")
               for item in report["local_imports"]), report["local_imports"]


def test_the_reader_sees_an_import_against_the_layers(tmp_path):
    pkg = tmp_path / "rlgen"
    (pkg / "nets").mkdir(parents=True)
    (pkg / "rl").mkdir()
    for f in ("__init__.py", "nets/__init__.py", "rl/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "rl" / "dqn.py").write_text("from rlgen.nets import x\n")
    (pkg / "nets" / "heads.py").write_text("def f():\n    from rlgen.rl import dqn\n")
    report = layers.report(tmp_path)
    assert report["against_layers"] == ["rlgen/nets/heads.py:2: rlgen.nets.heads -> rlgen.rl.dqn"]
    assert report["local_imports"] == ["rlgen/nets/heads.py:2 -> rlgen.rl.dqn"]
    assert report["package_circles"] == [["rlgen.nets", "rlgen.rl"]]
