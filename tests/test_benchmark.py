"""`sceneparse benchmark`: the numbers are computed consistently (nothing here is timed against a bar)."""
import json

import pytest
import torch

from sceneparse.benchmark import benchmark, random_metadata
from sceneparse.models import count_flops
from sceneparse.cli import main
from sceneparse.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def test_flops_of_a_convolution():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.randn(2, 3, 10, 12)) == 2 * (2 * 10 * 12) * 8 * (3 * 3 * 3)


def _consistent(result: dict, batch_size: int) -> None:
    median_s = result["latency_ms"]["median"] / 1e3
    assert result["latency_ms"]["min"] <= result["latency_ms"]["median"] <= result["latency_ms"]["p90"]
    assert result["images_per_s"] == pytest.approx(batch_size / median_s, rel=0.01)
    assert result["gflops_achieved"] == pytest.approx(result["gflop"] / median_s, rel=0.02, abs=0.1)
    assert result["percent_of_peak"] == pytest.approx(100 * result["gflops_achieved"] / result["peak_gflops_fp32"],
                                                      rel=0.02, abs=0.1)
    assert result["peak_gflops_fp32"] > 0 and result["peak_rss_mb"] > 10


@pytest.mark.parametrize("engine", ["torch", "onnxruntime-int8"])
def test_benchmark_result_is_consistent(engine):
    model = build_model("segnet_basic", 5).eval()
    result = benchmark(model, "segnet_basic", random_metadata("segnet_basic", 5), (40, 48), engine=engine,
                       batch_size=2, runs=3, warmup=0)
    assert (result["engine"], result["size"], result["batch_size"], result["runs"]) == (engine, [40, 48], 2, 3)
    # the FLOPs of the whole batch: the first 7x7 conv alone is 2 * 2*40*48 * 64 * 7*7*3
    assert result["gflop"] >= 2 * 2 * 40 * 48 * 64 * 147 / 1e9
    _consistent(result, 2)


def test_benchmark_command_prints_json(capsys):
    assert main(["benchmark", "--model", "pspnet_lite", "--num-classes", "4", "--size", "36x44", "--runs", "2",
                 "--warmup", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "pspnet_lite" and result["engine"] == "torch" and result["threads"] >= 1
    _consistent(result, 1)
    assert main(["benchmark", "--model", "pspnet_lite", "--size", "16x16"]) == 2
    assert main(["benchmark", "--model", "no_such_net"]) == 2
    assert "unknown model" in capsys.readouterr().err
