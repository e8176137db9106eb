"""LMFFNet: output sizes, parameter count, layout, a learning step, determinism, channels_last, ONNX export."""
import pytest
import torch
import torch.nn.functional as F

from sceneparse.export import export_onnx
from sceneparse.models import build_model
from sceneparse.models.lmffnet import LMFFNet, SEMB
from sceneparse.utils import IGNORE_INDEX, SceneparseError

from conftest import lively

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def batch(n: int = 2, h: int = 48, w: int = 64, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, h, w, generator=g)
    masks = torch.randint(0, classes, (n, h, w), generator=g)
    masks[:, :4] = IGNORE_INDEX
    return images, masks


def colour_task(n: int = 2, h: int = 48, w: int = 64, seed: int = 0):
    """Smooth random colour fields; a pixel's class is its strongest channel (learnable, unlike random masks)."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.randn(n, 3, 4, 5, generator=g), (h, w), mode="bilinear", align_corners=False)
    return images, images.argmax(1)


def test_parameter_count_is_the_papers():
    with torch.device("meta"):
        # the paper: LMFFNet-3-8, 1.35 M parameters (19 classes)
        assert n_params(build_model("lmffnet", 19)) == 1_346_752
        assert n_params(build_model("lmffnet", 11)) == 1_344_280
        assert 500_000 < n_params(build_model("lmffnet", 11, dilations2=(4, 8, 16, 32))) < 1_000_000


def test_layout():
    model = LMFFNet(11)
    assert [m.context.conv.dilation for m in model.block1] == [(2, 2)] * 3
    assert [m.context.conv.dilation[0] for m in model.block2] == [4, 4, 8, 8, 16, 16, 32, 32]
    sem = model.block2[0]
    assert isinstance(sem, SEMB) and sem.reduce.conv.out_channels == 64
    assert sem.local.conv.groups == sem.context.conv.groups == 32 and sem.merge.conv.kernel_size == (3, 3)
    assert model.ffm_b2.conv.in_channels == 2 * 128 + 3 and model.aux_head is None
    relu = LMFFNet(11, activation="relu")
    assert not any(isinstance(m, torch.nn.PReLU) for m in relu.modules())


@pytest.mark.parametrize("size", [(33, 47), (64, 96), (97, 129)])
def test_exact_output_size_for_odd_inputs(size):
    torch.manual_seed(0)
    model = LMFFNet(4)
    out = model.train()(torch.randn(2, 3, *size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, *size)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, *size)).shape == (1, 4, *size)


def test_bad_options_raise_value_error():
    for options in ({"width1": 30}, {"width2": 0}, {"dilations2": (4, 0)}, {"dropout": 1.0}, {"activation": "gelu"}):
        with pytest.raises(ValueError):
            LMFFNet(5, **options)
    with pytest.raises(SceneparseError, match="activation must be 'prelu' or 'relu', got 'gelu'"):
        build_model("lmffnet", 5, activation="gelu")


def test_sgd_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = LMFFNet(3).train()
    images, masks = colour_task()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(4):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_INDEX)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses  # 1.106 -> 0.789


def test_eval_is_deterministic_and_channels_last_agrees():
    model = lively(LMFFNet(5, dropout=0.2))
    images, _ = batch(h=57, w=75)
    with torch.no_grad():
        first, second = model(images), model(images)
        model = model.to(memory_format=torch.channels_last)
        nhwc = model(images.contiguous(memory_format=torch.channels_last))
    assert torch.equal(first, second)
    torch.testing.assert_close(nhwc, first, rtol=1e-4, atol=1e-4 * first.abs().max().item())


def test_channels_last_gradients_agree():
    torch.manual_seed(0)
    images, masks = batch(h=40, w=56)
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = LMFFNet(5).train().to(memory_format=memory_format)
        F.cross_entropy(model(images.contiguous(memory_format=memory_format)), masks,
                        ignore_index=IGNORE_INDEX).backward()
        grads.append([p.grad for p in model.parameters()])
    for p, q in zip(*grads, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5)


def test_dynamic_onnx_export(tmp_path):
    """export_onnx with size=None traces at one size and checks onnxruntime against torch at another.
    Every kind of layer of the full network, with fewer blocks (the full one takes ~25 s to export)."""
    model = lively(LMFFNet(5, dilations1=(), dilations2=(8,)))
    export_onnx(model, tmp_path / "lmffnet.onnx", size=None, metadata={"model": "lmffnet"})
    assert (tmp_path / "lmffnet.onnx").stat().st_size > 500_000
