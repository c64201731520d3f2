"""The ten Meta-Dataset sources but Omniglot (Triantafillou et al. 2020) from their original
release folders, each with Meta-Dataset's class split; official archives downloaded and checked
where they are public.

None of the sources ships with metalearn or is fetched by the tests (they read tiny synthetic
trees in each layout). Sources and splits (train/val/test classes):

======================  ==================================================  =============
source                  folder under the data root                          split
======================  ==================================================  =============
``ilsvrc_2012``         ``ILSVRC2012_img_train/<synset>/`` + ``wordnet.is_a.txt``  712/158/130
``aircraft``            ``fgvc-aircraft-2013b/data/``                       70/15/15
``cu_birds``            ``CUB_200_2011/``                                   140/30/30
``dtd``                 ``dtd/images/<class>/``                             33/7/7
``quickdraw``           ``quickdraw/<class>.npy``                           241/52/52
``fungi``               ``fungi/`` (``train.json``, ``val.json``, ``images/``)  994/200/200
``vgg_flower``          ``vgg_flower/`` (``jpg/``, ``imagelabels.mat``)     71/15/16
``traffic_sign``        ``GTSRB/Final_Training/Images/<%05d>/``             0/0/43
``mscoco``              ``mscoco/`` (``train2017/``, ``instances_train2017.json``)  0/40/40
======================  ==================================================  =============
"""

from __future__ import annotations

import os
from pathlib import Path

from metalearn.data.md_sources.common import (
    MD_SEED,
    SPLIT_COUNTS,
    Archive,
    MetaDatasetLayoutError,
    download_archives,
    extract_archive,
    md_class_split,
    md_split_indices,
)
from metalearn.data.md_sources.readers import (
    ARCHIVES,
    coco_crop_box,
    ilsvrc_edges,
    ilsvrc_splits,
    locate_source,
    quickdraw_counts,
    read_aircraft,
    read_cu_birds,
    read_dtd,
    read_fungi,
    read_ilsvrc,
    read_mscoco,
    read_quickdraw,
    read_traffic_sign,
    read_vgg_flower,
)

READERS = {
    "ilsvrc_2012": read_ilsvrc, "aircraft": read_aircraft, "cu_birds": read_cu_birds, "dtd": read_dtd,
    "quickdraw": read_quickdraw, "fungi": read_fungi, "vgg_flower": read_vgg_flower,
    "traffic_sign": read_traffic_sign, "mscoco": read_mscoco,
}
"""Source name -> ``read_<source>(root, split, image_size=84, ...) -> ClassDataset``."""


_BY_HAND = {
    "quickdraw": "fetch the 345 .npy files with gsutil -m cp "
                 "gs://quickdraw_dataset/full/numpy_bitmap/*.npy ROOT/quickdraw/",
    "mscoco": "bring your own copy: train2017.zip and annotations_trainval2017.zip from "
              "cocodataset.org, extracted into ROOT/mscoco/",
    "ilsvrc_2012": "bring your own copy of ILSVRC2012_img_train.tar (image-net.org, under its terms), "
                   "each synset's tar extracted into ROOT/ILSVRC2012_img_train/<synset>/, plus "
                   "https://www.image-net.org/archive/wordnet.is_a.txt there",
}


def download_source(source: str, root: str | os.PathLike, *, allow_unverified: bool = False,
                    quiet: bool = False) -> Path:
    """Download the official archives of ``source`` into ``root``, check them, extract them
    safely, and return the extracted folder.

    Args:
        allow_unverified: Also fetch archives without a published checksum (Aircraft, Fungi,
            Traffic Signs); otherwise they raise ValueError naming the URL.

    Raises:
        ValueError: ``source`` has no public archive (ILSVRC-2012 and MSCOCO: bring your own copy;
            QuickDraw: ``gsutil``), or an archive is unverified and not allowed.
        ChecksumError: a download does not match its MD5.

    Examples:
        >>> download_source("mscoco", "/tmp")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: mscoco has no archive metalearn can download...
    """
    if source not in ARCHIVES:
        raise KeyError(f"unknown Meta-Dataset source {source!r}; choose from {sorted(ARCHIVES)}")
    if not ARCHIVES[source]:
        raise ValueError(f"{source} has no archive metalearn can download: {_BY_HAND[source]}")
    download_archives(root, ARCHIVES[source], allow_unverified=allow_unverified, quiet=quiet)
    return locate_source(source, root)


__all__ = [
    "ARCHIVES", "MD_SEED", "READERS", "SPLIT_COUNTS", "Archive", "MetaDatasetLayoutError",
    "coco_crop_box", "download_archives", "download_source", "extract_archive", "ilsvrc_edges",
    "ilsvrc_splits", "locate_source", "md_class_split", "md_split_indices", "quickdraw_counts",
    "read_aircraft", "read_cu_birds", "read_dtd", "read_fungi", "read_ilsvrc", "read_mscoco",
    "read_quickdraw", "read_traffic_sign", "read_vgg_flower",
]
