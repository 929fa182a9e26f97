"""rlgen: reinforcement, generative and self-supervised learning on shared encoder backbones.

``rlgen.load(RUN_DIR)`` gives back what a run trained (:mod:`rlgen.loading`); the ``rlgen`` command lists and
runs every command (:mod:`rlgen.commands`).
"""

from rlgen.version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str):  # noqa: ANN202
    # rlgen.load imports torch and every family: loaded on first use, so `import rlgen` stays light
    if name == "load":
        from rlgen.loading import load

        return load
    raise AttributeError(f"module 'rlgen' has no attribute {name!r}")
