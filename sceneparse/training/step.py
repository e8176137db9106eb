"""A fast training step on CPU: channels_last memory format and a torch.compile'd training forward.

The training loop keeps its own structure (optimiser, accumulation, logging) and only swaps
`compute_loss(model(images), ...)` for the function returned here:

    model = prepare_for_training(model, channels_last=True)
    loss_fn = make_loss_fn(model, criterion, aux_weight=0.4, compile=True)
    for images, masks in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(images, masks)
        loss.backward()
        optimizer.step()

Why it is faster (measured by benchmarks/train_step.py): the depth-wise convolutions of the
CPU-first networks are memory bound and take a slow path in NCHW; in channels_last (NHWC) oneDNN
runs them several times faster. After that, BatchNorm, PReLU and the additions around them,
forward and backward, take as long as the convolutions; torch.compile (inductor) fuses them into
a few loops, and AOTAutograd compiles the backward graph too. The convolutions themselves stay
oneDNN calls.

Only the model's training forward is compiled, not the loss: with the cross-entropy inside the
compiled graph, torch 2.13's inductor returns all-zero gradients for DABNet at 8x240x320 (the loss
never moves; correct at 4x96x128), while the model alone compiles to gradients within 0.2% of
eager (global relative difference) at both sizes. The model itself is unchanged (same
parameters, same state_dict keys, no `_orig_mod.` prefix), so evaluation, checkpoints and
`--resume` use the plain module; evaluating in eval mode does not trigger a recompilation of the training graph.
The first call compiles (about a minute on 2 cores, less with inductor's on-disk cache) and every
new input shape compiles again, so keep the crop size and batch fixed (drop_last=True).

Reproducibility on CPU: with a fixed seed, inputs and thread count, both paths are bit-for-bit
deterministic run to run (tests/test_cpu_nets.py checks it). The compiled step does not give the
same bits as the eager step (fused kernels sum in another order): losses agree to about 1e-5
relative, so a run must be resumed with the same `compile` setting to continue bit for bit.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def prepare_for_training(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Put `model` in training mode and, if asked, in channels_last memory format (in place)."""
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def make_loss_fn(model: nn.Module, criterion: nn.Module, aux_weight: float = 0.4, channels_last: bool = True,
                 compile: bool = False, bf16: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return `loss_fn(images, masks) -> loss` running the model's training forward and `criterion`.

    channels_last: convert the images to NHWC first (use with `prepare_for_training`)
    compile:       torch.compile the model's forward (inductor); its backward is compiled with it
    bf16:          autocast the forward to bfloat16 (the loss is computed in float32)
    Models returning `(logits, aux_logits)` get `criterion(logits) + aux_weight * criterion(aux)`.
    """

    # dynamic=False: one static graph per input shape (fastest kernels; dynamic-shape graphs of the
    # backward fail to compile in torch 2.13 for this network)
    forward = torch.compile(model, dynamic=False) if compile else model

    def loss_fn(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
            output = forward(images)
        if isinstance(output, tuple):
            main, aux = output
            return criterion(main.float(), masks) + aux_weight * criterion(aux.float(), masks)
        return criterion(output.float(), masks)

    return loss_fn
