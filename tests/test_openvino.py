"""The OpenVINO engine: f32 agreement with torch on every zoo network, the conversion cache,
`--engine auto`, precision refusals, the IR export and NNCF int8."""
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'sceneparse[openvino]')")

from sceneparse import engines, runtime  # noqa: E402
from sceneparse.checkpoint import make_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402
from sceneparse.cli import main  # noqa: E402
from sceneparse.engines import choose_engine, load_network  # noqa: E402
from sceneparse.inference import Segmenter  # noqa: E402
from sceneparse.models import build_model, list_models  # noqa: E402
from sceneparse.runtime import OvEngine, ir_metadata, weights_key  # noqa: E402
from sceneparse.utils import SceneparseError  # noqa: E402

from conftest import CLASSES, PALETTE, lively  # noqa: E402
from test_export import SLOW, STREET, _colour_task, normalize  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test converts into its own cache folder, never the user's; auto measures small inputs."""
    monkeypatch.setenv("SCENEPARSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engines, "AUTO_SIZE", (48, 64))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = lively(build_model("segnet_basic", len(CLASSES)))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(make_checkpoint("segnet_basic", len(CLASSES), {}, model.state_dict(), CLASSES, PALETTE,
                                    dataset="camvid", label_set="classes"), path)
    return path


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [])
                                  for n in list_models()])
def test_openvino_f32_matches_torch(name, cache):
    """OpenVINO f32 labels equal torch labels on >= 99.9% of pixels at an odd size (photo crops)."""
    torch.manual_seed(0)
    model = lively(build_model(name, 7))
    engine = OvEngine.from_module(model, {"model": name}, "f32", threads=1, cache=cache)
    x = torch.stack([normalize(STREET[10:77, 20:111]), normalize(STREET[200:267, 300:391])])
    with torch.inference_mode():
        expected = model(x)
    got = engine(x)
    assert got.shape == expected.shape
    agreement = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agreement >= 0.999, f"{name}: labels agree on {agreement:.4%}"
    # logits match, apart from where a max-pooling tie moved SegNet's unpooling index (see test_export;
    # measured for segnet_vgg16: median difference 1e-5 of logits up to 34, 1% of them off by > 0.06)
    assert (got - expected).abs().median() <= 1e-4 * expected.abs().max()


def test_the_cache_is_reused_and_invalidated_when_the_weights_change(cache, monkeypatch):
    calls = []
    convert = runtime.convert_module
    monkeypatch.setattr(runtime, "convert_module", lambda *a: calls.append(1) or convert(*a))
    model = lively(build_model("segnet_basic", 3))
    x = torch.randn(1, 3, 40, 56)
    first = OvEngine.from_module(model, {"classes": ["a", "b", "c"]}, cache=cache)(x)
    again = OvEngine.from_module(model, {"classes": ["a", "b", "c"]}, cache=cache)
    assert len(calls) == 1 and len(list((cache / "openvino").glob("*.xml"))) == 1
    assert torch.equal(again(x), first) and again.metadata["classes"] == ["a", "b", "c"]
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # a retrained checkpoint: other weights
    OvEngine.from_module(model, {}, cache=cache)
    assert len(calls) == 2 and len(list((cache / "openvino").glob("*.xml"))) == 2
    # a damaged cache entry is converted again, not trusted
    for xml in (cache / "openvino").glob("*.xml"):
        xml.write_text("<net")
    assert torch.equal(OvEngine.from_module(model, {}, cache=cache)(x), OvEngine.from_module(model, {})(x))
    assert len(calls) == 3
    # the structure counts too: same weights, another activation
    relu, prelu = build_model("dabnet", 3, activation="relu"), build_model("dabnet", 3)
    assert weights_key(relu) != weights_key(prelu)


def test_static_shapes_then_one_dynamic_model(cache):
    engine = OvEngine.from_module(lively(build_model("segnet_basic", 3)), {}, cache=cache)
    for w in range(40, 40 + 8 * (engine.MAX_STATIC_SHAPES + 2), 8):
        assert engine(torch.randn(1, 3, 32, w)).shape == (1, 3, 32, w)
    assert len(engine.requests) == engine.MAX_STATIC_SHAPES and engine.dynamic is not None


def test_auto_picks_only_exact_engines(checkpoint, cache, monkeypatch):
    from sceneparse.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    net, name = choose_engine(ckpt, threads=1)
    assert name in ("torch", "openvino f32")
    assert getattr(net, "precision", "f32") == "f32"
    choices = json.loads((cache / "engines.json").read_text())
    (entry,) = choices.values()
    assert set(entry["ms"]) == {"torch", "openvino"}
    # a remembered choice is used without measuring again
    perf_counter = time.perf_counter
    monkeypatch.setattr(engines.time, "perf_counter", lambda: pytest.fail("measured again"))
    assert choose_engine(ckpt, threads=1)[1] == name
    # an entry naming an inexact engine (edited, or written by other code) is never taken
    for key in choices:
        choices[key]["engine"] = "openvino-bf16"
    (cache / "engines.json").write_text(json.dumps(choices))
    monkeypatch.setattr(engines.time, "perf_counter", perf_counter)
    assert choose_engine(ckpt, threads=1)[1] in ("torch", "openvino f32")
    # asking for a precision by name is not auto's choice: it goes to OpenVINO, and says so
    monkeypatch.setattr(runtime, "openvino_capabilities", lambda: {"FP32", "BF16"})
    assert load_network(ckpt, "auto", threads=1, precision="bf16")[1] == "openvino bf16"


def test_auto_times_each_engine_on_the_input_predict_gives_it(checkpoint, cache):
    from sceneparse.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    network = type(model_from_checkpoint(ckpt))
    seen: dict[int, list[bool]] = {}  # per instance: the torch candidate, and the copy OpenVINO converts

    def record(module, args):
        if type(module) is network:
            seen.setdefault(id(module), []).append(args[0].is_contiguous(memory_format=torch.channels_last))

    handle = nn.modules.module.register_module_forward_pre_hook(record)
    try:
        choose_engine(ckpt, threads=1)
    finally:
        handle.remove()
    # torch's warm-up and timed runs see channels_last images, as in Segmenter.predict
    assert any(len(calls) >= 4 and all(calls) for calls in seen.values()), seen
    # a choice written by the older measurement (torch timed on NCHW input) is measured again
    (key,) = json.loads((cache / "engines.json").read_text())
    assert key.startswith(f"{engines.CHOICE_VERSION}|")


def test_bf16_is_refused_cleanly_where_the_cpu_lacks_it(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "openvino_capabilities", lambda: {"FP32", "INT8"})
    with pytest.raises(SceneparseError, match="no native bf16"):
        Segmenter.from_checkpoint(checkpoint, engine="openvino", precision="bf16")
    Image.fromarray(STREET[:48, :64].copy()).save(tmp_path / "p.png")
    code = main(["predict", str(tmp_path / "p.png"), "--checkpoint", str(checkpoint), "--engine", "openvino",
                 "--precision", "bf16", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no native bf16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--engine", "torch", "--precision", "int8"], "only --engine openvino runs int8"),
    (["--engine", "openvino", "--precision", "int8"], "needs --calibration DIR"),
])
def test_precision_errors(checkpoint, tmp_path, capsys, args, message):
    Image.fromarray(STREET[:48, :64].copy()).save(tmp_path / "p.png")
    code = main(["predict", str(tmp_path / "p.png"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
                + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_predict_with_openvino_matches_torch_and_names_the_engine(checkpoint, tmp_path, capsys):
    photo = STREET[100:170, 200:300].copy()
    torch_labels = Segmenter.from_checkpoint(checkpoint).predict(photo)
    seg = Segmenter.from_checkpoint(checkpoint, engine="openvino")
    assert seg.info["engine"] == "openvino f32"
    assert (seg.predict(photo) == torch_labels).mean() >= 0.999
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert main(["predict", str(tmp_path / "photo.png"), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "out"), "--outputs", "index", "--threads", "1"]) == 0  # the default: auto
    err = capsys.readouterr().err
    assert "image(s)" in err and ("(torch)" in err or "(openvino f32)" in err)  # auto: either exact engine
    labels = np.asarray(Image.open(tmp_path / "out" / "photo_index.png"))
    assert (labels == torch_labels).mean() >= 0.999


def test_openvino_predicts_images_under_32_pixels_a_side(checkpoint):
    """OpenVINO refuses a pooling larger than its input: the segmenter pads such images, as for torch."""
    seg = Segmenter.from_checkpoint(checkpoint, engine="openvino")
    reference = Segmenter.from_checkpoint(checkpoint)
    for photo in (STREET[100:101, 200:201], STREET[100:105, 200:220], STREET[100:131, 200:231]):  # all run at 32x32
        labels = seg.predict(photo.copy())
        assert labels.shape == photo.shape[:2]
        assert (labels == reference.predict(photo.copy())).mean() >= 0.99


def test_openvino_ir_export_and_predict_from_the_file(checkpoint, tmp_path):
    out = tmp_path / "model.xml"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "openvino", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]  # no temporary folder left
    seg = Segmenter.from_onnx(out, engine="openvino")
    assert seg.classes == CLASSES and seg.info["engine"] == "openvino f32" and seg.info["model"] == "segnet_basic"
    photo = STREET[100:170, 200:300].copy()
    assert (seg.predict(photo) == Segmenter.from_checkpoint(checkpoint).predict(photo)).mean() >= 0.999
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "openvino", "--out",
                 str(tmp_path / "m.onnx")]) == 2
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "openvino", "--size", "48x64",
                 "--out", str(tmp_path / "m2.xml")]) == 2


def test_a_file_that_is_not_a_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text("<net>")
    with pytest.raises(SceneparseError, match="not a loadable ONNX or OpenVINO model"):
        OvEngine.from_file(bad)
    with pytest.raises(SceneparseError, match="model file not found"):
        OvEngine.from_file(tmp_path / "missing.xml")


def test_int8_agrees_with_f32_on_a_trained_network(tmp_path, cache):
    """NNCF int8 labels agree with f32 on >= 98% of pixels for a small network trained on a colour
    task (random weights would leave the classes nearly tied everywhere)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 3, 1))
    optimizer = torch.optim.Adam(net.parameters(), 0.01)
    for step in range(80):
        x, y = _colour_task(8, step)
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    calibration = [image[None].numpy() for image in _colour_task(16, 500)[0]]
    meta = {"model": "colour", "classes": ["r", "g", "b"]}
    f32 = OvEngine.from_module(net, meta, "f32", cache=cache)
    int8 = OvEngine.from_module(net, meta, "int8", calibration=calibration, cache=cache)
    assert ir_metadata(int8.model)["precision"] == "int8"
    x, truth = _colour_task(8, 1000)
    assert (f32(x).argmax(1) == truth).float().mean() >= 0.95  # the network did learn the task
    assert (int8(x).argmax(1) == f32(x).argmax(1)).float().mean() >= 0.98
    assert any(op.get_type_name() == "FakeQuantize" for op in int8.model.get_ops())
    # another calibration set is another cache entry
    OvEngine.from_module(net, meta, "int8", calibration=calibration[:4], cache=cache)
    assert len(list((cache / "openvino").glob("int8-*.xml"))) == 2


def test_benchmark_scores_the_engine_against_torch_on_real_images(shared_data, capsys):
    code = main(["benchmark", "--checkpoint", "camvid", "--size", "360x480", "--engine", "openvino", "--runs", "1",
                 "--warmup", "0", "--threads", "1", "--eval-root", str(shared_data / "camvid_segnet"),
                 "--eval-limit", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    accuracy = result["accuracy"]
    assert code == 0 and accuracy["images"] == 2 and accuracy["split"] == "test"
    assert accuracy["label_agreement"] >= 0.999 and abs(accuracy["miou_delta"]) <= 0.002
    assert 0.3 < accuracy["miou_torch_f32"] <= 1


def test_auto_without_openvino_is_torch_without_measuring(checkpoint, cache, monkeypatch):
    from sceneparse.checkpoint import load_checkpoint

    find_spec = engines.importlib.util.find_spec
    monkeypatch.setattr(engines.importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else find_spec(name, *a))
    net, name = choose_engine(load_checkpoint(checkpoint), threads=1)
    assert name == "torch" and isinstance(net, nn.Module) and not (cache / "engines.json").exists()


def test_auto_runs_torch_when_openvino_cannot_convert_the_network(checkpoint, cache, monkeypatch):
    from sceneparse.checkpoint import load_checkpoint

    def refuse(module, metadata):
        raise SceneparseError(f"{module.__class__.__name__}: OpenVINO could not convert it (unsupported op)")

    monkeypatch.setattr(runtime, "convert_module", refuse)
    net, name = choose_engine(load_checkpoint(checkpoint), threads=1)
    assert name == "torch" and isinstance(net, nn.Module)


def test_a_cache_that_cannot_be_written_still_runs_the_network(cache, monkeypatch):
    def full_disk(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runtime, "save_ir", full_disk)
    model = lively(build_model("segnet_basic", 3))
    x = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        expected = model(x)
    got = OvEngine.from_module(model, {}, cache=cache)(x)
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.999
