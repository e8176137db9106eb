import json
import math
import types

import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse import metrics
from sceneparse.metrics import ConfusionMatrix
from sceneparse.utils import SceneparseError


def cm_of(pred, target, num_classes=3):
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.tensor(pred), torch.tensor(target))
    return cm


def test_perfect_prediction():
    target = [[0, 1, 2], [2, 1, 0]]
    r = cm_of(target, target).report(["a", "b", "c"])
    assert r["miou"] == r["pixel_acc"] == r["mean_class_acc"] == r["fwiou"] == 1.0
    assert r["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert all(s == {"iou": 1.0, "acc": 1.0} for s in r["per_class"].values())


def test_all_wrong():
    r = cm_of([1, 1, 0, 0], [0, 0, 1, 1], num_classes=2).report(["a", "b"])
    assert r["miou"] == r["pixel_acc"] == r["mean_class_acc"] == r["fwiou"] == 0.0
    assert r["confusion_matrix"] == [[0, 2], [2, 0]]


def test_absent_class_is_left_out_of_the_mean():
    # class 2 has neither ground truth nor prediction; class 1 is only predicted (IoU 0, no accuracy)
    r = cm_of([0, 0, 1, 0], [0, 0, 0, 0]).report(["a", "b", "c"])
    assert r["per_class"]["c"] == {"iou": None, "acc": None}
    assert r["per_class"]["b"] == {"iou": 0.0, "acc": None}
    assert r["per_class"]["a"] == {"iou": 0.75, "acc": 0.75}
    assert r["miou"] == pytest.approx((0.75 + 0.0) / 2)
    assert r["mean_class_acc"] == pytest.approx(0.75)
    assert math.isnan(metrics.per_class_iou(torch.tensor([[3, 1, 0], [0, 0, 0], [0, 0, 0]]))[2])


def test_ignore_pixels_are_not_counted():
    cm = cm_of([0, 2, 1, 1, 2], [0, 255, 1, 255, 255])
    assert cm.matrix.sum() == 2
    assert cm.matrix.dtype == torch.int64
    assert cm.report(["a", "b", "c"])["miou"] == 1.0
    # a custom ignore index
    cm = ConfusionMatrix(2, ignore_index=9)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 9, 1]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]


def test_hand_computed_scores():
    m = torch.tensor([[3, 1], [0, 2]])  # rows = ground truth
    assert metrics.pixel_accuracy(m) == pytest.approx(5 / 6)
    assert metrics.per_class_iou(m).tolist() == pytest.approx([3 / 4, 2 / 3])
    assert metrics.mean_iou(m) == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert metrics.per_class_accuracy(m).tolist() == pytest.approx([3 / 4, 1.0])
    assert metrics.mean_class_accuracy(m) == pytest.approx(0.875)
    assert metrics.fw_iou(m) == pytest.approx(4 / 6 * 3 / 4 + 2 / 6 * 2 / 3)


def test_rows_are_ground_truth():
    cm = cm_of([1], [0], num_classes=2)
    assert cm.matrix.tolist() == [[0, 1], [0, 0]]


def test_batches_accumulate_like_one_pass_and_merge_like_both():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (4, 2, 16, 16), generator=g)
    target = torch.randint(0, 6, (4, 2, 16, 16), generator=g)
    target[target == 5] = 255
    whole = ConfusionMatrix(5)
    whole.update(pred, target)
    batched = ConfusionMatrix(5)
    for p, t in zip(pred, target):
        batched.update(p, t)
    assert torch.equal(whole.matrix, batched.matrix)
    assert whole.matrix.sum() == (target != 255).sum()

    first, second = ConfusionMatrix(5), ConfusionMatrix(5)
    first.update(pred[:1], target[:1])
    second.update(pred[1:], target[1:])
    assert torch.equal(first.merge(second).matrix, whole.matrix)
    assert torch.equal(whole.all_reduce().matrix, batched.matrix)  # no process group: no-op
    whole.reset()
    assert whole.matrix.sum() == 0


def test_collapse_to_groups():
    m = torch.tensor([[5, 1, 2], [3, 4, 0], [1, 0, 6]])
    c = metrics.collapse(m, [0, 0, 1])
    assert c.tolist() == [[13, 2], [1, 6]]
    r = metrics.report(c, ["ab", "c"])
    assert r["per_class"]["ab"]["iou"] == pytest.approx(13 / (15 + 14 - 13))
    assert r["miou"] == pytest.approx((13 / 16 + 6 / 9) / 2)
    with pytest.raises(SceneparseError):
        metrics.collapse(m, [0, 1])


@pytest.mark.parametrize("pred, target, words", [
    ([0, 1], [0, 7], "label value 7"),
    ([0, 3], [0, 1], "prediction value 3"),
    ([0, -1], [0, 1], "prediction value -1"),
    ([0, 1, 2], [0, 1], "shape"),
])
def test_bad_values_raise_one_line(pred, target, words):
    with pytest.raises(SceneparseError, match=words) as info:
        cm_of(pred, target)
    assert "\n" not in str(info.value)


def test_report_json_and_table(tmp_path):
    r = cm_of([0, 0, 1, 0], [0, 0, 0, 0]).report(["road", "car", "bicycle"])
    assert set(r) == {"miou", "pixel_acc", "mean_class_acc", "fwiou", "per_class", "confusion_matrix"}
    path = tmp_path / "out" / "report.json"
    metrics.save_report(r, path)
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == r
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left behind
    with pytest.raises(ValueError):  # NaN is refused rather than written as invalid JSON
        metrics.save_report({"miou": float("nan")}, tmp_path / "bad.json")

    table = metrics.format_table(r).splitlines()
    rows = [line for line in table if line.split() and line.split()[0] in ("road", "car", "bicycle")]
    assert len(rows) == 3 and len({len(line) for line in rows}) == 1  # aligned columns
    assert rows[0].split() == ["road", "0.7500", "0.7500"]
    assert rows[2].split() == ["bicycle", "-", "-"]
    assert any(line.split()[:1] == ["mIoU"] and line.endswith("0.3750") for line in table)


def _cityscapes_ids():
    from cityscapesscripts.helpers.labels import labels

    # labelId -> trainId; every label with ignoreInEval has trainId 255 (or -1: license plate, which never
    # appears in labelIds images), so "ignore in our matrix" == "ignoreInEval in theirs".
    to_train = np.full(256, 255, dtype=np.uint8)
    eval_ids, names, category_of = [], [], []
    categories = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    for label in sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId):
        to_train[label.id] = label.trainId
        eval_ids.append(label.id)
        names.append(label.name)
        category_of.append(categories.index(label.category))
    assert len(eval_ids) == 19
    ids = [lab.id for lab in labels if lab.id >= 0]
    return to_train, np.array(eval_ids), names, ids, category_of, categories


def test_agrees_with_cityscapesscripts(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    to_train, eval_ids, names, all_ids, category_of, categories = _cityscapes_ids()
    rng = np.random.default_rng(0)
    gt_ids = np.array([i for i in all_ids if i != 31])  # no 'train' anywhere: IoU undefined on both sides
    pred_ids = eval_ids[eval_ids != 31]
    preds, gts = [], []
    for k in range(3):
        # ground truth in blocks (runs of one label) over all labelIds, void and ignored ones included
        gt = np.repeat(np.repeat(rng.choice(gt_ids, (12, 16)), 6, 0), 6, 1).astype(np.uint8)
        # predictions are eval labelIds only (a network predicts train ids, written back as labelIds):
        # their evaluator would count a predicted void id as a miss of the true class, which a train-id
        # prediction can never be; mostly right, sometimes a random class
        pred = eval_ids[np.clip(to_train[gt], 0, 18)]
        wrong = rng.random(gt.shape) < 0.4
        pred[wrong] = rng.choice(pred_ids, int(wrong.sum()))
        pred = pred.astype(np.uint8)
        gts.append(tmp_path / f"frankfurt_000000_00000{k}_gtFine_labelIds.png")
        preds.append(tmp_path / f"frankfurt_000000_00000{k}_pred.png")
        Image.fromarray(gt).save(gts[-1])
        Image.fromarray(pred).save(preds[-1])

    args = types.SimpleNamespace(
        evalInstLevelScore=False, evalPixelAccuracy=False, evalLabels=[], quiet=True, JSONOutput=False,
        normalized=True, printRow=5, colorized=False, bold="", nocol="", exportFile=str(tmp_path / "cs.json"),
        avgClassSize=cs.args.avgClassSize)
    theirs = cs.evaluateImgLists([str(p) for p in preds], [str(p) for p in gts], args)

    cm = ConfusionMatrix(19)
    for p, g in zip(preds, gts):
        pred = to_train[np.asarray(Image.open(p))]
        cm.update(torch.from_numpy(pred).long(), torch.from_numpy(to_train[np.asarray(Image.open(g))]).long())
    ours = cm.report(names)
    ours_categories = metrics.report(metrics.collapse(cm.matrix, category_of), categories)

    diffs = []
    for name in names:
        if name == "train":
            assert math.isnan(theirs["classScores"][name]) and ours["per_class"][name]["iou"] is None
            continue
        diffs.append(abs(theirs["classScores"][name] - ours["per_class"][name]["iou"]))
    for name in categories:
        diffs.append(abs(theirs["categoryScores"][name] - ours_categories["per_class"][name]["iou"]))
    diffs.append(abs(theirs["averageScoreClasses"] - ours["miou"]))
    diffs.append(abs(theirs["averageScoreCategories"] - ours_categories["miou"]))
    print(f"max |IoU difference| vs cityscapesscripts: {max(diffs):.3g}")
    assert max(diffs) < 1e-6
    assert 0.2 < ours["miou"] < 0.9  # a non-trivial case
    assert not (tmp_path / "cs.json").exists()
