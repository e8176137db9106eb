"""A checkpoint written by release 0.1.0 (2 training iterations of a narrow DABNet on the bundled
CamVid frames, with its training state) still loads, predicts bit for bit as it did, and resumes."""
import hashlib
from pathlib import Path

import numpy as np
import torch

from sceneparse.checkpoint import load_checkpoint, model_from_checkpoint
from sceneparse.inference import Segmenter

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKPOINT = FIXTURES / "release_v0.1.0.pt"
# sha256 of the uint8 class map of the demo photo, predicted with release 0.1.0 on one thread
DEMO_LABELS_SHA256 = "0ccc2d516834cbc468ef8588713110573fc69bfb0dc7f8d0adb196c11b96a846"


def test_logits_bit_identical(one_thread):
    model = model_from_checkpoint(load_checkpoint(CHECKPOINT))
    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    expected = torch.load(FIXTURES / "release_v0.1.0_logits.pt", weights_only=True)["logits"]
    assert torch.equal(logits, expected)


def test_demo_prediction_bit_identical(one_thread, samples):
    labels = Segmenter.from_checkpoint(CHECKPOINT).predict(samples / "demo" / "street.png")
    assert labels.shape == (360, 480)
    assert hashlib.sha256(labels.astype(np.uint8).tobytes()).hexdigest() == DEMO_LABELS_SHA256


def test_resumes_training(one_thread, samples, tmp_path):
    from sceneparse.training.config import TrainConfig
    from sceneparse.training import train

    old = load_checkpoint(CHECKPOINT)
    cfg = TrainConfig(**{**old["config"], "root": str(samples / "camvid"), "iterations": 3})
    (tmp_path / "last.pt").write_bytes(CHECKPOINT.read_bytes())
    result = train(cfg, tmp_path, resume="auto")
    assert result["iteration"] == 3 and not result["interrupted"]
    resumed = load_checkpoint(tmp_path / "last.pt")
    assert resumed["train_state"]["iteration"] == 3
    assert not torch.equal(resumed["state_dict"]["classifier.weight"], old["state_dict"]["classifier.weight"])
