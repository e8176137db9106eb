"""The `sceneparse` command. Parsing lives here; each command's work lives in its module."""
from __future__ import annotations

import argparse
import sys

from sceneparse.utils import SceneparseError


def _models(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo and the built-in trained models")
    p.add_argument("--size", default="512x1024", help="input size HxW for the GFLOP column")
    p.add_argument("--num-classes", type=int, default=19)
    p.set_defaults(func=lambda a: _call("sceneparse.models.zoo_cli", "run_models", a))


def _weights(sub) -> None:
    p = sub.add_parser("weights", help="ImageNet backbone weights (explicit download)")
    s = p.add_subparsers(dest="weights_cmd", required=True)
    f = s.add_parser("fetch", help="download torchvision's ImageNet weights and verify the checksum")
    f.add_argument("name", help="resnet18|resnet34|resnet50|resnet101|vgg16_bn|vgg19")
    f.add_argument("--cache", default=None, help="folder (default ~/.cache/sceneparse)")
    f.add_argument("--url", default=None, help="override the download URL (mirrors, tests)")
    f.set_defaults(func=lambda a: _call("sceneparse.models.weights", "run_fetch", a))


def _data(sub) -> None:
    p = sub.add_parser("data", help="check, show and count a dataset")
    s = p.add_subparsers(dest="data_cmd", required=True)
    for name, helptext in (("verify", "check every pair; exit 1 when something is wrong"),
                           ("show", "grid of images beside colourised labels"),
                           ("stats", "class frequencies and median-frequency weights")):
        q = s.add_parser(name, help=helptext)
        q.add_argument("--dataset", required=True)
        q.add_argument("--root", required=True)
        q.add_argument("--split", default=None, help="default: every split the dataset has")
        q.add_argument("--label-set", default=None, help="cityscapes: classes (19) or categories (7)")
        if name == "show":
            q.add_argument("--out", required=True, help="PNG to write")
            q.add_argument("--num", type=int, default=6)
        if name == "stats":
            q.add_argument("--out", default=None, help="JSON of frequencies and weights, for training")
        if name == "verify":
            q.add_argument("--color-threshold", type=float, default=40.0)
        q.set_defaults(func=lambda a, n=name: _call("sceneparse.data.commands", f"run_{n}", a))


def _train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue exactly from a last.pt (auto: OUT/last.pt if it exists)")
    p.add_argument("--stop-after", type=int, default=None, metavar="ITER",
                   help="write last.pt and stop at this iteration (continue later with --resume)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="write last.pt and stop after this many minutes")
    p.set_defaults(func=lambda a: _call("sceneparse.engine.train", "run_train", a))


def _inference_args(p, checkpoint_required: bool = False) -> None:
    p.add_argument("--checkpoint", default=None, required=checkpoint_required,
                   help="checkpoint path or built-in name (default: camvid)")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole")
    p.add_argument("--crop", default=None, help="sliding window HxW")
    p.add_argument("--stride", default=None, help="sliding stride S or HxW")
    p.add_argument("--scales", default="1.0", help="comma-separated, e.g. 0.75,1.0,1.25")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    p.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument("--onnx", default=None, help="ONNX file for --engine onnxruntime")
    p.add_argument("--batch-size", type=int, default=None,
                   help="network inputs per forward pass (images, flipped copies, windows); "
                        "default: one image at a time, windows about a megapixel per pass")
    p.add_argument("--resize", default="auto", metavar="HxW|native|auto",
                   help="resize each image to HxW for the network (probabilities back to its size); "
                        "auto (default): the size stored with the model (models trained on the "
                        "256x256 pix2pix pairs), else native")
    p.add_argument("--threads", type=int, default=None)


def _evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint on a dataset split")
    _inference_args(p)
    p.add_argument("--dataset", default=None)
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--label-set", default=None, help="score on another label set, e.g. categories")
    p.add_argument("--out", default=None)
    p.add_argument("--save-predictions", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--per-image", action="store_true", help="also write per-image scores")
    p.set_defaults(func=lambda a: _call("sceneparse.engine.evaluate", "run_evaluate", a))


def _predict(sub) -> None:
    p = sub.add_parser("predict", help="segment images, folders or globs")
    p.add_argument("inputs", nargs="+")
    _inference_args(p)
    p.add_argument("--out", default="predictions")
    p.add_argument("--outputs", default="index,color,overlay")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--legend", action="store_true")
    p.add_argument("--cityscapes-ids", action="store_true", help="also write labelIds PNGs")
    p.set_defaults(func=lambda a: _call("sceneparse.predict", "run_predict", a))


def _export(sub) -> None:
    p = sub.add_parser("export", help="export the eval network to ONNX (fp32 or int8) or a slim checkpoint")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--format", choices=["onnx", "checkpoint"], default="onnx",
                   help="checkpoint: weights and metadata only, no training state (what ships as a built-in)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default=None, help="fixed input HxW")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--quantize", choices=["int8"], default=None)
    p.add_argument("--calibration", default=None, help="folder of images for int8 calibration")
    p.add_argument("--calibration-images", type=int, default=32,
                   help="use at most this many calibration images (spread over the folder)")
    p.set_defaults(func=lambda a: _call("sceneparse.export", "run_export", a))


def _benchmark(sub) -> None:
    p = sub.add_parser("benchmark", help="inference latency, throughput, FLOPs and peak memory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None)
    g.add_argument("--checkpoint", default=None)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--size", default="512x1024")
    p.add_argument("--engine", default="torch",
                   choices=["torch", "torch-compile", "onnxruntime", "onnxruntime-int8"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--calibration", default=None,
                   help="images for the int8 engine's calibration (default: the bundled demo photo)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _call("sceneparse.benchmark", "run_benchmark", a))


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="the README's main job on the bundled sample")
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(func=lambda a: _call("sceneparse.demo", "run_demo", a))


def _call(module: str, function: str, args: argparse.Namespace) -> int:
    import importlib

    return getattr(importlib.import_module(module), function)(args) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sceneparse", description=__doc__)
    from sceneparse import __version__

    parser.add_argument("--version", action="version", version=f"sceneparse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_models, _weights, _data, _train, _evaluate, _predict, _export, _benchmark, _demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SceneparseError as e:
        print(f"sceneparse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sceneparse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sceneparse models | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
