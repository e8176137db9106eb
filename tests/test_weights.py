"""Backbone weights: loading torchvision-format state dicts, and `weights fetch` against a local server."""
import argparse
import hashlib
import http.server
import os
import socket
import threading

import pytest
import torch

from sceneparse.cli import main
from sceneparse.cli import weights as weights_command
from sceneparse.models import build_model, load_backbone_weights
from sceneparse.models import weights
from sceneparse.models.resnet import ResNet
from sceneparse.models.vgg import VGG
from sceneparse.utils import SceneparseError


def torchvision_state_dict(backbone: torch.nn.Module, classifier: str) -> dict:
    """A state dict as torchvision saves it: the backbone's keys plus the ImageNet classifier."""
    state = dict(backbone.state_dict())
    if classifier == "fc":
        state["fc.weight"], state["fc.bias"] = torch.randn(1000, backbone.out_channels), torch.randn(1000)
    else:
        state["classifier.0.weight"], state["classifier.0.bias"] = torch.randn(64, 25088), torch.randn(64)
        state["classifier.6.weight"], state["classifier.6.bias"] = torch.randn(1000, 64), torch.randn(1000)
    return state


def randomise_bn(module: torch.nn.Module) -> None:
    """Give BN buffers non-default values, so that loading them is visible in the outputs."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def features(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = backbone.eval()(x)
    return out[-1] if isinstance(out, list) else out


def error_of(model, path) -> str:
    with pytest.raises(SceneparseError) as e:
        load_backbone_weights(model, path)
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- loading

@pytest.mark.parametrize("name, source, classifier", [
    ("pspnet_resnet18", lambda: ResNet("resnet18"), "fc"),
    ("segnet_vgg16", lambda: VGG("vgg16_bn"), "classifier"),
    ("psp_vgg19", lambda: VGG("vgg19"), "classifier"),  # plain torchvision layout into the pool-less encoder
])
def test_torchvision_state_dict_loads_and_reproduces_outputs(name, source, classifier, tmp_path):
    torch.manual_seed(0)
    reference = source()
    randomise_bn(reference)
    path = tmp_path / "weights.pth"
    torch.save(torchvision_state_dict(reference, classifier), path)

    torch.manual_seed(1)
    model = build_model(name, 3)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    x = torch.randn(1, 3, 40, 48)
    assert not torch.allclose(features(model.backbone, x), features(reference, x))
    load_backbone_weights(model, path)

    for key, value in reference.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    if name != "psp_vgg19":  # same layout: identical outputs; psp_vgg19 dilates and drops pools on purpose
        assert torch.equal(features(model.backbone, x), features(reference, x))
    assert all(torch.equal(v, head_before[k]) for k, v in model.state_dict().items() if k in head_before)


def test_old_torchvision_files_without_num_batches_tracked_load(tmp_path):
    reference = ResNet("resnet18")
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = build_model("pspnet_resnet18", 3)
    load_backbone_weights(model, tmp_path / "old.pth")
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_backbone_of_a_training_checkpoint_loads(tmp_path):
    source = build_model("pspnet_resnet18", 3)
    torch.save({"format": "sceneparse-checkpoint", "state_dict": source.state_dict()}, tmp_path / "ckpt.pt")
    model = build_model("pspnet_resnet18", 7)
    load_backbone_weights(model, tmp_path / "ckpt.pt")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source.backbone.layer4[1].conv2.weight)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(torchvision_state_dict(ResNet("resnet18"), "fc"), path)
    return path


def test_other_architecture_is_named(resnet18_file, tmp_path):
    message = error_of(build_model("segnet_vgg16", 3), resnet18_file)
    assert str(resnet18_file) in message and "holds resnet18 weights" in message and "vgg16_bn" in message
    torch.save(ResNet("resnet34").state_dict(), tmp_path / "r34.pth")
    message = error_of(build_model("pspnet_resnet18", 3), tmp_path / "r34.pth")
    assert "holds resnet34 weights, the model's backbone is resnet18" in message


def test_missing_and_unexpected_keys_are_listed(resnet18_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    del state["layer4.1.bn2.weight"], state["layer2.0.downsample.0.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    message = error_of(build_model("pspnet_resnet18", 3), tmp_path / "bad.pth")
    assert "missing 2 key(s) [layer2.0.downsample.0.weight, layer4.1.bn2.weight]" in message
    assert "unexpected 1 key(s) [layer5.0.conv1.weight]" in message


def test_shape_mismatch_is_named(resnet18_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    message = error_of(build_model("pspnet_resnet18", 3), tmp_path / "shape.pth")
    assert "shape mismatch for layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in message


def test_deep_stem_mismatch_says_why(resnet18_file):
    message = error_of(build_model("pspnet_resnet18", 3, deep_stem=True), resnet18_file)
    assert "conv1.0.weight" in message and "deep stem" in message


@pytest.mark.parametrize("content, expected", [
    (lambda p: torch.save([1, 2, 3], p), "not a state dict (found a list)"),
    (lambda p: torch.save({"epoch": 3}, p), "not a state dict"),
    (lambda p: torch.save({"state_dict": {"classifier.weight": torch.zeros(1)}}, p), "without backbone.* weights"),
    (lambda p: p.write_bytes(os.urandom(2048)), "not a readable PyTorch weights file"),
    (lambda p: p.write_bytes(b""), "not a readable PyTorch weights file"),
    (lambda p: None, "file not found"),
])
def test_unusable_files(content, expected, tmp_path):
    path = tmp_path / "weights.pth"
    content(path)
    message = error_of(build_model("pspnet_resnet18", 3), path)
    assert str(path) in message and expected in message


def test_model_without_torchvision_backbone():
    with pytest.raises(SceneparseError, match="SegNetBasic has no torchvision ResNet/VGG backbone"):
        load_backbone_weights(build_model("segnet_basic", 3), "whatever.pth")


def test_imagenet_resolves_to_the_fetched_file(resnet18_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SCENEPARSE_CACHE", str(tmp_path))
    model = build_model("pspnet_resnet18", 3)
    message = error_of(model, "imagenet")
    assert "run `sceneparse weights fetch resnet18`" in message and "resnet18-f37072fd.pth" in message
    (tmp_path / "resnet18-f37072fd.pth").write_bytes(resnet18_file.read_bytes())
    load_backbone_weights(model, "imagenet")
    reference = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(model.backbone.bn1.running_var, reference["bn1.running_var"])
    assert "deep stem" in error_of(build_model("pspnet_resnet18", 3, deep_stem=True), "imagenet")


# ---------------------------------------------------------------- `weights fetch` against 127.0.0.1

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    requests = []

    def do_GET(self):
        Handler.requests.append(self.path)
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        # "/truncated...": the connection closes after half of the announced bytes
        self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2] if self.path.startswith("/truncated") else PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fixture_entry(monkeypatch, server):
    """Point the resnet18 entry at the local server, with the fixture's checksum."""
    entry = weights.Published(f"{server}/good/resnet18-{SHA[:8]}.pth", SHA[:8])
    monkeypatch.setitem(weights.IMAGENET, "resnet18", entry)
    return entry


def fetch_error(cache, **kwargs) -> str:
    with pytest.raises(SceneparseError) as e:
        weights.fetch("resnet18", cache, **kwargs)
    assert "\n" not in str(e.value)
    assert not cache.exists() or not any(cache.iterdir()), "a partial file was left behind"
    return str(e.value)


def test_fetch_downloads_verifies_and_reuses(fixture_entry, tmp_path, capsys):
    cache = tmp_path / "cache"
    Handler.requests.clear()
    assert main(["weights", "fetch", "resnet18", "--cache", str(cache)]) == 0
    path = cache / fixture_entry.filename
    assert path.read_bytes() == PAYLOAD and list(cache.iterdir()) == [path]
    assert "verified" in capsys.readouterr().out
    weights.fetch("resnet18", cache)  # already there with the right checksum: no second download
    assert Handler.requests == [f"/good/{fixture_entry.filename}"]


def test_fetch_url_override(fixture_entry, server, tmp_path):
    args = argparse.Namespace(name="resnet18", cache=str(tmp_path), url=f"{server}/mirror/r18.pth")
    assert weights_command.run_fetch(args) == 0
    assert (tmp_path / fixture_entry.filename).read_bytes() == PAYLOAD


def test_fetch_wrong_checksum_leaves_nothing(server, monkeypatch, tmp_path):
    monkeypatch.setitem(weights.IMAGENET, "resnet18", weights.Published(f"{server}/good/r.pth", "00000000"))
    message = fetch_error(tmp_path)
    assert "checksum mismatch" in message and SHA[:16] in message


def test_fetch_truncated_transfer_leaves_nothing(fixture_entry, server, tmp_path):
    message = fetch_error(tmp_path, url=f"{server}/truncated/r.pth")
    assert "truncated" in message and f"of {len(PAYLOAD)} bytes" in message


def test_fetch_http_error(fixture_entry, server, tmp_path):
    assert "HTTP 404" in fetch_error(tmp_path, url=f"{server}/missing/r.pth")


def test_fetch_server_down(fixture_entry, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = fetch_error(tmp_path, url=f"http://127.0.0.1:{port}/r.pth")
    assert "download failed" in message and "refused" in message.lower()
    assert main(["weights", "fetch", "resnet18", "--cache", str(tmp_path), "--url",
                 f"http://127.0.0.1:{port}/r.pth"]) == 2
    assert capsys.readouterr().err.startswith("sceneparse: error: http://127.0.0.1")


def test_fetch_unknown_name(tmp_path):
    with pytest.raises(SceneparseError, match="unknown weights 'resnet152'.*vgg19"):
        weights.fetch("resnet152", tmp_path)


def test_published_table_matches_torchvision_file_names():
    assert set(weights.IMAGENET) == {"resnet18", "resnet34", "resnet50", "resnet101", "vgg16_bn", "vgg19"}
    for name, entry in weights.IMAGENET.items():
        assert entry.url.startswith("https://download.pytorch.org/models/")
        assert entry.filename == f"{name}-{entry.sha256}.pth" and len(entry.sha256) == 8
