"""`sceneparse evaluate` and the validation pass of training: one confusion matrix per run.

Under torchrun each process scores every world-th image and the matrices are summed, so the
result equals the single-process one exactly.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from sceneparse.engine import distributed as dist
from sceneparse.metrics import ConfusionMatrix, collapse, format_table, report, save_report
from sceneparse.utils import SceneparseError, atomic_path, save_image


def _size(text: str | None, option: str) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise SceneparseError(f"{option} {text}: expected a size HxW or S") from None
    return (values[0], values[0]) if len(values) == 1 else values[:2]


def inference_options(args) -> dict:
    """The inference keyword arguments shared by evaluate and predict, from parsed CLI args."""
    try:
        scales = tuple(float(s) for s in str(args.scales).split(","))
    except ValueError:
        raise SceneparseError(f"--scales {args.scales}: expected numbers like 0.75,1.0,1.25") from None
    crop, stride = _size(args.crop, "--crop"), _size(args.stride, "--stride")
    if args.mode == "slide" and crop is None:
        raise SceneparseError("--mode slide needs --crop HxW")
    resize = args.resize if args.resize in ("auto", "native") else _size(args.resize, "--resize")
    return {"mode": args.mode, "crop": crop, "stride": stride, "scales": scales, "flip": args.flip,
            "resize": resize}


@torch.no_grad()
def evaluate_model(model, dataset, device: torch.device | str = "cpu", class_names: list[str] | None = None,
                   mode: str = "whole", crop=None, stride=None, scales=(1.0,), flip: bool = False,
                   resize: tuple[int, int] | None = None, groups: list[int] | None = None,
                   group_names: list[str] | None = None,
                   limit: int | None = None, progress: bool = False,
                   on_prediction=None) -> dict:
    """Score `model` (a torch module or an onnxruntime engine) on `dataset`; return the report dict.

    `groups` maps each class to a group (e.g. Cityscapes categories): the report then also has
    the group scores. `on_prediction(index, pred, target)` is called per image (saving outputs,
    per-image scores).
    """
    from sceneparse.inference import infer

    if isinstance(model, torch.nn.Module):
        model.eval()
    names = list(class_names or dataset.classes)
    cm = ConfusionMatrix(len(names))
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    shard = Subset(dataset, indices[dist.rank()::dist.world_size()])
    loader = DataLoader(shard, batch_size=1, num_workers=0)
    from tqdm import tqdm

    for i, (image, target) in enumerate(tqdm(loader, desc="evaluate", disable=not (progress and dist.is_main()),
                                             dynamic_ncols=True)):
        image = image.to(device)
        probs = infer(model, image, mode=mode, crop=crop, stride=stride, scales=scales, flip=flip,
                      resize=resize)
        pred = probs.argmax(1).cpu()
        cm.update(pred, target)
        if on_prediction is not None:
            on_prediction(shard.indices[i], pred[0], target[0])
    cm.all_reduce()
    return report(cm.matrix, names, groups=groups, group_names=group_names)


def _label_set_mapping(ckpt: dict, wanted: str | None):
    """Groups that turn the checkpoint's classes into the label set asked for, or None."""
    have = ckpt["dataset"].get("label_set") or ""
    if not wanted or wanted == have:
        return None, None
    from sceneparse.data import labels

    if wanted == "categories" and ckpt["dataset"]["name"] in ("cityscapes", "cityscapes_pairs") \
            and len(ckpt["classes"]) == len(labels.CITYSCAPES_CLASSES):
        return labels.CITYSCAPES_TRAINID_TO_CATEGORY, labels.CITYSCAPES_CATEGORIES
    raise SceneparseError(f"--label-set {wanted}: cannot map this checkpoint's {len(ckpt['classes'])} "
                          f"{ckpt['dataset']['name'] or 'unknown'} classes to '{wanted}'")


def run_evaluate(args) -> int:
    from sceneparse.data import build_dataset
    from sceneparse.data.transforms import eval_transform
    from sceneparse.engine.checkpoint import load_checkpoint
    from sceneparse.inference import resolve_resize

    device = dist.init()
    try:
        ckpt = load_checkpoint(args.checkpoint)
        config = ckpt.get("config", {})
        name = args.dataset or ckpt["dataset"]["name"]
        root = args.root or config.get("root")
        if not name or not root:
            raise SceneparseError("give --dataset and --root (the checkpoint does not say where its data is)")
        options = dict(config.get("dataset_options", {})) if name == ckpt["dataset"]["name"] else {}
        if ckpt["dataset"].get("label_set"):
            options["label_set"] = ckpt["dataset"]["label_set"]
        norm = ckpt["normalization"]
        dataset = build_dataset(name, root, args.split, transform=eval_transform(mean=norm["mean"], std=norm["std"]),
                                **options)
        if list(dataset.classes) != list(ckpt["classes"]):
            raise SceneparseError(f"{root}: dataset '{name}' has classes {list(dataset.classes)[:4]}..., the "
                                  f"checkpoint predicts {list(ckpt['classes'])[:4]}... ({len(ckpt['classes'])})")
        groups, group_names = _label_set_mapping(ckpt, args.label_set)
        options = inference_options(args)
        options["resize"] = resolve_resize(options["resize"], ckpt["dataset"].get("photo_size"))
        model = _engine(ckpt, args, device)
        out = Path(args.out) if args.out else Path(f"eval_{name}_{args.split}")
        per_image, save = [], None
        if args.save_predictions or args.per_image:
            save = _prediction_writer(out, dataset, ckpt, args.save_predictions, per_image)
        result = evaluate_model(model, dataset, device=device, class_names=ckpt["classes"],
                                limit=args.limit, progress=True, on_prediction=save, **options)
        if groups is not None:  # score on the coarser label set: `miou` becomes the category mIoU
            matrix = collapse(torch.tensor(result["confusion_matrix"]), groups)
            result = report(matrix, list(group_names))
        result["setup"] = {"checkpoint": str(args.checkpoint or "camvid"), "dataset": name, "root": str(root),
                           "split": args.split, "images": len(dataset) if args.limit is None
                           else min(args.limit, len(dataset)), "label_set": args.label_set or
                           ckpt["dataset"].get("label_set") or "", **options, "engine": args.engine}
        if dist.is_main():
            out.mkdir(parents=True, exist_ok=True)
            save_report(result, out / "metrics.json")
            from sceneparse.viz import plot_confusion

            names = list(group_names) if groups is not None else list(ckpt["classes"])
            plot_confusion(np.array(result["confusion_matrix"]), names, out / "confusion_matrix.png")
            if args.per_image:
                per_image.sort(key=lambda r: r["index"])
                with atomic_path(out / "per_image.json") as tmp:
                    tmp.write_text(json.dumps(per_image, indent=1))
            print(format_table(result))
            print(f"wrote {out / 'metrics.json'}", file=sys.stderr)
    finally:
        dist.cleanup()
    return 0


def _engine(ckpt: dict, args, device):
    from sceneparse.engine.checkpoint import model_from_checkpoint

    if args.engine == "onnxruntime":
        from sceneparse.export import OrtEngine

        if not args.onnx:
            raise SceneparseError("--engine onnxruntime needs --onnx FILE (made by `sceneparse export`)")
        return OrtEngine(args.onnx, threads=args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    return model_from_checkpoint(ckpt).to(device)


def _prediction_writer(out: Path, dataset, ckpt: dict, save_png: bool, per_image: list):
    from sceneparse.viz import colorize

    palette = ckpt["palette"]
    n = len(ckpt["classes"])

    def on_prediction(index: int, pred: torch.Tensor, target: torch.Tensor) -> None:
        stem = Path(dataset.samples[index][0]).stem
        if save_png:
            arr = pred.numpy().astype(np.uint8)
            save_image(arr, out / "predictions" / f"{stem}.png")
            save_image(colorize(arr, palette), out / "predictions" / f"{stem}_color.png")
        cm = ConfusionMatrix(n)
        cm.update(pred, target)
        r = report(cm.matrix, list(ckpt["classes"]))
        per_image.append({"index": index, "image": str(dataset.samples[index][0]), "miou": r["miou"],
                          "pixel_acc": r["pixel_acc"]})

    return on_prediction
