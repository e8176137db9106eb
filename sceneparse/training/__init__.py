"""Training: `train(load_config("configs/x.yaml"), "runs/x")` trains a network from a config.

loop.py is the loop itself; the other modules are one concern each (config, sampler, schedule,
losses, ema, runlog, state, step).
"""
from sceneparse.training.config import TrainConfig, load_config
from sceneparse.training.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
