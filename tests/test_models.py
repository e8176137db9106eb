"""The model zoo: the contract of every model, backbone layouts, pyramid pooling, SegNet unpooling, the CLI."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import sceneparse
from sceneparse.cli import main
from sceneparse import checkpoint
from sceneparse.models import build_model, list_models
from sceneparse.models.heads import PyramidPooling
from sceneparse.models.pspnet_lite import WindowPyramidPooling
from sceneparse.models.resnet import ResNet
from sceneparse.models.segnet import max_pool, unpool
from sceneparse.models.vgg import VGG
from sceneparse.cli.models import count
from sceneparse.utils import SceneparseError

NUM_CLASSES = 5


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def has_aux(model: torch.nn.Module) -> bool:
    return getattr(model, "aux_head", None) is not None


# ---------------------------------------------------------------- every model (parametrized over the zoo)

@pytest.mark.parametrize("name", list_models())
def test_eval_output_shape_any_size_and_batch(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES).eval()
    assert model.num_classes == NUM_CLASSES
    with torch.no_grad():
        for n, h, w in ((1, 97, 131), (2, 32, 45)):  # odd sizes, the smallest height allowed
            out = model(torch.randn(n, 3, h, w))
            assert isinstance(out, torch.Tensor), "eval mode must return logits only, no aux output"
            assert out.shape == (n, NUM_CLASSES, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_train_mode_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES).train()
    x = torch.randn(2, 3, 32, 40)  # batch 2: BN after a 1x1 pooled branch needs more than one value
    target = torch.randint(0, NUM_CLASSES, (2, 32, 40))
    out = model(x)
    if has_aux(model):
        assert isinstance(out, tuple) and len(out) == 2
        logits, aux = out
        assert aux.shape == (2, NUM_CLASSES, 32, 40)
        loss = F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)
    else:
        assert isinstance(out, torch.Tensor)
        logits = out
        loss = F.cross_entropy(logits, target)
    assert logits.shape == (2, NUM_CLASSES, 32, 40)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_pspnet_aux_only_where_asked():
    with torch.device("meta"):
        assert all(has_aux(build_model(f"pspnet_resnet{d}", 3)) for d in (18, 34, 50, 101))
        assert not any(has_aux(build_model(name, 3)) for name in ("segnet_vgg16", "segnet_basic", "pspnet_lite",
                                                                   "psp_vgg19"))
    model = build_model("pspnet_resnet18", 3, aux=False).train()
    assert not has_aux(model)
    assert isinstance(model(torch.randn(2, 3, 40, 40)), torch.Tensor)


def test_package_exports_and_classes():
    model = sceneparse.PSPNet(num_classes=19, backbone="resnet18", output_stride=16, bins=(1, 2, 4))
    assert model.ppm.bins == (1, 2, 4)
    assert isinstance(model.backbone, ResNet) and model.backbone.arch == "resnet18"
    assert isinstance(sceneparse.SegNet(3).backbone, VGG)
    assert isinstance(sceneparse.PSPVGG19(3).backbone, VGG)
    assert len(sceneparse.DABNet(11, dilations2=(4, 8, 16)).backbone.block2) == 3
    assert set(sceneparse.list_models()) >= {
        "pspnet_resnet18", "pspnet_resnet34", "pspnet_resnet50", "pspnet_resnet101",
        "segnet_vgg16", "segnet_basic", "pspnet_lite", "psp_vgg19", "dabnet", "dabnet_psp"}


def test_build_model_errors_are_one_line():
    cases = [
        (("nope", 3), {}, "unknown model 'nope'"),
        (("segnet_basic", 0), {}, "num_classes"),
        (("pspnet_resnet50", 3), {"dilation": 2}, "unknown option(s) dilation"),
        (("pspnet_resnet50", 3), {"backbone": "resnet18"}, "unknown option(s) backbone"),  # fixed by the name
        (("pspnet_resnet18", 3), {"output_stride": 4}, "output_stride must be 8 or 16"),
        (("pspnet_resnet18", 3), {"bins": [1, 0]}, "bins must be positive"),
        (("pspnet_resnet18", 3), {"dropout": "high"}, "bad option value"),
        (("pspnet_lite", 3), {"windows": [2, "x"]}, "windows must be positive"),
    ]
    for args, options, expected in cases:
        with pytest.raises(SceneparseError) as e:
            build_model(*args, **options)
        assert expected in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SceneparseError, match="pspnet_resnet18.*psp_vgg19"):
        build_model("nope", 3)


# ---------------------------------------------------------------- backbones: torchvision layouts

def test_backbone_parameter_counts_equal_torchvision():
    with torch.device("meta"):  # counting needs no memory
        assert n_params(ResNet("resnet18")) == 11_176_512  # torchvision resnet18 without fc
        assert n_params(ResNet("resnet50")) == 23_508_032
        assert n_params(VGG("vgg16_bn").features) == 14_723_136
        assert n_params(VGG("vgg19").features) == 20_024_384
        # the dilated / pool-less variants keep the same weights
        assert n_params(ResNet("resnet50", output_stride=16)) == 23_508_032
        assert n_params(build_model("psp_vgg19", 3).backbone) == 20_024_384


def test_resnet_names_follow_torchvision():
    with torch.device("meta"):
        r50 = ResNet("resnet50").state_dict()
        r18 = ResNet("resnet18").state_dict()
    # torchvision's resnet50 state dict has 320 entries, 318 without fc.weight / fc.bias
    assert len(r50) == 318 and len(r18) == 120
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
                "layer3.5.conv3.weight", "layer4.2.bn3.num_batches_tracked"):
        assert key in r50
    assert "layer1.0.downsample.0.weight" not in r18 and "layer2.0.downsample.0.weight" in r18
    assert "layer2.1.conv2.weight" in r18 and "layer2.1.conv3.weight" not in r18
    assert not any(k.startswith("fc.") for k in r50)


def test_vgg_indices_follow_torchvision():
    with torch.device("meta"):
        vgg16_bn = VGG("vgg16_bn").state_dict()
        vgg19 = VGG("vgg19").state_dict()
        psp = build_model("psp_vgg19", 3).backbone
    convs16 = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
    assert {k for k in vgg16_bn if k.endswith(".weight")} == {f"features.{i}.weight" for i in convs16} | {
        f"features.{i + 1}.weight" for i in convs16}
    convs19 = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    assert set(vgg19) == {f"features.{i}.{p}" for i in convs19 for p in ("weight", "bias")}
    # PSP-VGG19: pool4/pool5 removed without shifting the numbering, conv4_4 / conv5_4 atrous
    assert set(psp.state_dict()) == set(vgg19)
    assert isinstance(psp.features[27], torch.nn.Identity) and isinstance(psp.features[36], torch.nn.Identity)
    assert psp.features[25].dilation == (2, 2) and psp.features[25].padding == (2, 2)
    assert psp.features[34].dilation == (4, 4)
    assert psp.features[32].dilation == (1, 1)


@pytest.mark.parametrize("output_stride, dilations", [(8, (2, 4)), (16, (1, 2))])
def test_resnet_output_stride(output_stride, dilations):
    model = ResNet("resnet18", output_stride=output_stride).eval()
    with torch.no_grad():
        c1, c2, c3, c4 = model(torch.randn(1, 3, 97, 131))
    assert c2.shape[-2:] == (13, 17)  # stride 8 (each stride-2 step rounds up)
    expected = (13, 17) if output_stride == 8 else (7, 9)
    assert c3.shape[-2:] == expected and c4.shape[-2:] == expected
    assert c4.shape[1] == 512
    assert model.layer3[1].conv1.dilation == (dilations[0],) * 2
    assert model.layer4[1].conv1.dilation == (dilations[1],) * 2
    assert model.layer4[0].conv1.stride == (1, 1)


def test_deep_stem_names_and_shape():
    model = build_model("pspnet_resnet18", 3, deep_stem=True).eval()
    keys = model.backbone.state_dict()
    assert {"conv1.0.weight", "conv1.1.weight", "conv1.3.weight", "conv1.4.weight", "conv1.6.weight",
            "bn1.weight", "layer1.0.conv1.weight"} <= set(keys)
    assert "conv1.weight" not in keys
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 3, 50, 70)


# ---------------------------------------------------------------- pyramid pooling

def _pooled_grids(module, x):
    """Spatial size that reaches each branch's 1x1 conv (i.e. the pooled grid)."""
    grids = []
    hooks = [branch[1].register_forward_hook(lambda m, inp, out: grids.append(tuple(inp[0].shape[-2:])))
             for branch in module.branches]
    with torch.no_grad():
        out = module(x)
    for h in hooks:
        h.remove()
    return grids, out


@pytest.mark.parametrize("size", [(13, 17), (7, 5), (12, 12)])
def test_pyramid_pooling_grid_equals_bin(size):
    ppm = PyramidPooling(32, (1, 2, 3, 6)).eval()
    x = torch.randn(2, 32, *size)
    grids, out = _pooled_grids(ppm, x)
    assert grids == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert out.shape == (2, 32 + 4 * 8, *size)
    assert torch.equal(out[:, :32], x)  # the input is concatenated unchanged
    # the bin-1 branch sees the global mean; its upsampled output is constant over the map
    g = out[:, 32:40]
    assert torch.allclose(g, g[..., :1, :1].expand_as(g))


def test_pyramid_max_pooling_variant():
    ppm = PyramidPooling(16, (1, 2, 3, 6), branch_channels=4, mode="max", batch_norm=(False, True, False, True),
                         negative_slope=0.2, include_input=False).eval()
    grids, out = _pooled_grids(ppm, torch.randn(1, 16, 11, 13))
    assert grids == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert out.shape == (1, 16, 11, 13)
    assert [len(b) for b in ppm.branches] == [3, 4, 3, 4]  # BN only on the 2 and 6 branches
    x = torch.randn(1, 16, 5, 5)
    pooled = []
    h = ppm.branches[0][1].register_forward_hook(lambda m, inp, out: pooled.append(inp[0]))
    ppm(x)
    h.remove()
    assert torch.equal(pooled[0].flatten(), x.amax(dim=(2, 3)).flatten())


def test_window_pyramid_pooling_keras_windows_cover_odd_sizes():
    ppm = WindowPyramidPooling(8, (2, 4, 8), branch_channels=4).eval()
    x = torch.randn(1, 8, 37, 50)
    grids, out = _pooled_grids(ppm, x)
    # global pooling, then windows of 2, 4, 8: the grid follows the feature size (ceil: no pixel dropped)
    assert grids == [(1, 1), (19, 25), (10, 13), (5, 7)]
    assert out.shape == (1, 8 + 4 * 4, 37, 50)
    pooled = []
    h = ppm.branches[3][1].register_forward_hook(lambda m, inp, out: pooled.append(inp[0]))
    ppm(x)
    h.remove()
    # the last 8x8 window covers rows 32..36 and cols 48..49 only: their plain mean
    assert torch.allclose(pooled[0][0, :, -1, -1], x[0, :, 32:, 48:].mean(dim=(1, 2)), atol=1e-6)


# ---------------------------------------------------------------- SegNet unpooling

def test_unpool_puts_values_at_argmax_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)  # odd: the last row and column are never pooled
    pooled, indices = max_pool(x)
    assert pooled.shape == (2, 3, 3, 4)
    out = unpool(pooled, indices, x.shape[-2:])
    assert out.shape == x.shape
    assert torch.equal(out, F.max_unpool2d(pooled, indices, 2, 2, output_size=x.shape[-2:]))
    for i in range(3):
        for j in range(4):
            window = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten(2)
            got = out[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten(2)
            arg = window.argmax(dim=2, keepdim=True)
            assert torch.equal(got.gather(2, arg), window.gather(2, arg))  # the max, at its argmax
            assert (got != 0).sum(dim=2).le(1).all()  # and zeros elsewhere
    assert not out[..., 6, :].any() and not out[..., :, 8].any()


def test_unpool_gradient_flows_back_to_pooled_values():
    pooled = torch.randn(1, 2, 3, 3, requires_grad=True)
    _, indices = max_pool(torch.randn(1, 2, 6, 7))
    unpool(pooled, indices, torch.Size((6, 7))).sum().backward()
    assert torch.equal(pooled.grad, torch.ones_like(pooled))


# ---------------------------------------------------------------- `sceneparse models`

def test_models_cli_lists_every_model_with_counts(capsys):
    assert main(["models", "--size", "64x96", "--num-classes", "7"]) == 0
    out = capsys.readouterr().out
    assert "1 multiply-add = 2 FLOPs" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()
            and line.split()[0] in list_models()}
    assert set(rows) == set(list_models())
    params = int(rows["segnet_basic"][0].replace(",", ""))
    assert params == n_params(build_model("segnet_basic", 7))
    assert float(rows["pspnet_resnet50"][1]) > float(rows["pspnet_resnet18"][1]) > 0


def test_models_cli_shows_shipped_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert main(["models", "--size", "32x32"]) == 0
    assert "none shipped" in capsys.readouterr().out
    model = build_model("segnet_basic", 2)
    ckpt = checkpoint.make_checkpoint("segnet_basic", 2, {}, model.state_dict(), ["road", "other"],
                                      [(128, 64, 128), (0, 0, 0)], dataset="camvid",
                                      metrics={"miou": 0.6234, "pixel_acc": 0.9012,
                                               "setup": {"dataset": "camvid", "split": "test"}})
    checkpoint.save_checkpoint(ckpt, tmp_path / checkpoint.BUILTIN["camvid"])
    ckpt["metrics"] = {"miou": 0.41, "pixel_acc": 0.8, "setup": {"dataset": "cityscapes_pairs", "split": "val"},
                       "categories": {"miou": 0.72, "pixel_acc": 0.9}}
    checkpoint.save_checkpoint(ckpt, tmp_path / checkpoint.BUILTIN["cityscapes"])
    assert main(["models", "--size", "32x32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Built-in trained models") + 2
    assert [line.split() for line in lines[start:start + 3]] == [
        ["camvid", "segnet_basic", "2", "camvid", "test", "0.6234", "0.9012"],
        ["cityscapes", "segnet_basic", "2", "cityscapes_pairs", "val", "0.4100", "0.8000"],
        ["cityscapes_pairs", "val,", "categories", "0.7200", "0.9000"]]


def test_flops_on_meta_equal_a_real_forward():
    params, gflops = count("segnet_basic", 7, (64, 96))
    model = build_model("segnet_basic", 7).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
    assert math.isclose(gflops, counter.get_total_flops() / 1e9)
    # by hand: 7x7 convs (4 encoder, 4 decoder) at 64x96, 32x48, 16x24, 8x12, then a 1x1 classifier
    macs = sum(49 * c_in * 64 * (64 * 96) // 4 ** i for i, c_in in enumerate((3, 64, 64, 64)))
    macs += sum(49 * 64 * 64 * (64 * 96) // 4 ** i for i in range(4))
    macs += 64 * 7 * 64 * 96
    assert math.isclose(gflops, 2 * macs / 1e9)


@pytest.mark.parametrize("size", ["31x64", "16", "axb", "64x64x3"])
def test_models_cli_bad_size(size, capsys):
    assert main(["models", "--size", size]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sceneparse: error: --size") and "\n" not in err
