"""FBSNet: output sizes, parameter count, layout, its attention blocks, a learning step,
determinism, channels_last, ONNX export."""
import pytest
import torch
import torch.nn.functional as F

from sceneparse.export import export_onnx
from sceneparse.models import build_model
from sceneparse.models.fbsnet import BRU, ECA, FBSNet, CoordinateAttention, _channel_shuffle
from sceneparse.utils import IGNORE_INDEX, SceneparseError

from conftest import lively

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def colour_task(n: int = 2, h: int = 48, w: int = 64, seed: int = 0):
    """Smooth random colour fields; a pixel's class is its strongest channel (learnable, unlike random masks)."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.randn(n, 3, 4, 5, generator=g), (h, w), mode="bilinear", align_corners=False)
    return images, images.argmax(1)


def small(num_classes: int = 5, **options) -> FBSNet:
    """Every kind of layer of the full network, one BRU per stage."""
    return FBSNet(num_classes, dilations1=(1,), dilations2=(2,), dilations3=(5,), decoder_blocks=1, **options)


def test_parameter_count():
    with torch.device("meta"):
        # the paper reports 0.62 M (19 classes)
        assert n_params(build_model("fbsnet", 19)) == 607_095
        assert n_params(build_model("fbsnet", 11)) == 606_063
        assert n_params(build_model("fbsnet", 11, dilations3=(1, 2, 5, 9))) < 400_000


def test_layout():
    model = FBSNet(11)
    assert [len(s.blocks) for s in (model.stage1, model.stage2, model.stage3, model.stage4, model.stage5)] == \
        [5, 5, 16, 3, 3]
    assert [b.context1[0].conv.dilation[0] for b in model.stage2.blocks] == [1, 2, 5, 9, 17]
    assert [b.context1[1].conv.dilation[1] for b in model.stage3.blocks][-4:] == [2, 5, 9, 17]
    bru = model.stage3.blocks[0]
    assert isinstance(bru, BRU) and bru.reduce.conv.out_channels == 64 and bru.local1[0].conv.groups == 64
    assert model.classifier.out_channels == 11 and model.aux_head is None
    relu = FBSNet(11, activation="relu")
    assert not any(isinstance(m, torch.nn.PReLU) for m in relu.modules())


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (97, 129)])
def test_exact_output_size_for_odd_inputs(size):
    torch.manual_seed(0)
    model = small(4)
    out = model.train()(torch.randn(2, 3, *size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, *size)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, *size)).shape == (1, 4, *size)


def test_channel_shuffle_interleaves_the_groups_and_keeps_the_memory_format():
    x = torch.arange(6.0).reshape(1, 6, 1, 1).expand(2, 6, 3, 4)
    assert _channel_shuffle(x.contiguous(), 3)[0, :, 0, 0].tolist() == [0, 2, 4, 1, 3, 5]
    nhwc = x.contiguous(memory_format=torch.channels_last)
    y = _channel_shuffle(nhwc, 3)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, _channel_shuffle(x.contiguous(), 3))


def test_attention_blocks_only_reweight():
    """ECA scales whole channels; coordinate attention scales each row and column of a channel:
    where a block's input is zero its output is too, and a constant input keeps its sign."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 7)
    x[:, :, 2] = 0
    for block in (ECA(), CoordinateAttention(8).eval()):
        y = block(x)
        assert y.shape == x.shape and torch.equal(y[:, :, 2], torch.zeros_like(y[:, :, 2]))
        assert torch.all((y == 0) | (torch.sign(y) == torch.sign(x)))
    ratio = ECA()(x) / x.masked_fill(x == 0, 1)
    per_channel = ratio[:, :, 0]
    assert torch.allclose(per_channel, per_channel[:, :, :1].expand_as(per_channel))


def test_bad_options_raise_value_error():
    for options in ({"dilations3": (4, 0)}, {"dilations1": (True,)}, {"decoder_blocks": -1},
                    {"activation": "gelu"}):
        with pytest.raises(ValueError):
            FBSNet(5, **options)
    with pytest.raises(SceneparseError, match="decoder_blocks must be a non-negative integer, got -1"):
        build_model("fbsnet", 5, decoder_blocks=-1)


def test_adam_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = small(3).train()
    images, masks = colour_task()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)  # SGD at 0.05 moves it too slowly to test in 4 steps
    losses = []
    for _ in range(6):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_INDEX)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses  # 1.138 -> 0.839


def test_eval_is_deterministic_and_channels_last_agrees():
    model = lively(small())
    images = torch.randn(2, 3, 57, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = model(images), model(images)
        model = model.to(memory_format=torch.channels_last)
        nhwc = model(images.contiguous(memory_format=torch.channels_last))
    assert torch.equal(first, second)
    torch.testing.assert_close(nhwc, first, rtol=1e-4, atol=1e-4 * first.abs().max().item())


def test_dynamic_onnx_export(tmp_path):
    """export_onnx with size=None traces at one size and checks onnxruntime against torch at another."""
    model = lively(small())
    export_onnx(model, tmp_path / "fbsnet.onnx", size=None, metadata={"model": "fbsnet"})
    assert (tmp_path / "fbsnet.onnx").stat().st_size > 100_000
