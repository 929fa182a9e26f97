"""Datasets as uint8 image tensors: ``images, labels = rlgen.data.load(name, split)``.

Names: ``mnist``, ``fashion-mnist``, ``cifar10`` (downloaded from their canonical hosts and checked
against published MD5s; without a network the error says which files to place where),
``folder:PATH`` (PNG/JPEG images in a directory or .zip), and the offline sources ``digits``,
``mnist5k``, ``faces`` (procedural cartoon faces: the offline stand-in for the Anime Face Dataset)
``atari-frames:GAME`` (frames with their console RAM) and ``atari-stacks:GAME`` (the same frames as
DQN sees them: 84×84, stacks of 4). Data lives under ``root=``, else
``$RLGEN_DATA``, else ``~/.cache/rlgen``; decoded arrays are cached there as memory-mapped ``.npy``
files. Preview any of them with ``python -m rlgen.data.show NAME``.
"""

from rlgen.data.atari_frames import RAM_ANNOTATIONS, AtariFrames, load_atari_frames
from rlgen.data.cache import data_root
from rlgen.data.catalog import all_sources, load, load_dataset
from rlgen.data.core import Dataset
from rlgen.data.faces import ATTRIBUTES as FACE_ATTRIBUTES
from rlgen.data.faces import face_attributes
from rlgen.data.formats import DataFileError
from rlgen.data.grid import make_grid, save_grid
from rlgen.data.sources import mnist5k_split

__all__ = [
    "FACE_ATTRIBUTES",
    "RAM_ANNOTATIONS",
    "AtariFrames",
    "DataFileError",
    "Dataset",
    "all_sources",
    "data_root",
    "face_attributes",
    "load",
    "load_atari_frames",
    "load_dataset",
    "make_grid",
    "mnist5k_split",
    "save_grid",
]
