"""Distributed helpers for `torchrun`: DDP with gloo on CPU and nccl on GPU.

Started without torchrun everything here is a no-op and the world has one process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device: str = "auto") -> torch.device:
    """Join the process group when started by torchrun; return this process's device.

    On CPU the two cores are shared between processes, so each process gets an equal share of
    threads instead of oversubscribing the machine.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if local_world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj):
    """Send rank 0's object to every process (used to agree on failures and stop signals)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Leave the process group together: rank 0 may still be writing checkpoints when the others
    finish, and a peer that exits early makes gloo abort the process still talking to it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
