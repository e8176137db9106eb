"""sceneparse: semantic segmentation of street scenes.

    import sceneparse
    model = sceneparse.PSPNet(num_classes=19, backbone="resnet50")
    model = sceneparse.build_model("segnet_vgg16", num_classes=11)
    seg = sceneparse.Segmenter.from_checkpoint("camvid")
"""
__version__ = "0.1.0"

from sceneparse.inference import Segmenter  # noqa: E402
from sceneparse.models import (  # noqa: E402
    DABNet, PSPNet, PSPNetLite, PSPVGG19, SegNet, SegNetBasic, build_model, list_models, load_backbone_weights,
)
from sceneparse.utils import SceneparseError  # noqa: E402

__all__ = ["DABNet", "PSPNet", "PSPNetLite", "PSPVGG19", "SceneparseError", "SegNet", "SegNetBasic", "Segmenter",
           "build_model", "list_models", "load_backbone_weights"]

