"""What the U-Net really did, call by call, counted by torch hooks (not inferred from the plan)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
import torch
from search_helpers import one_thread

from datosearch.space.schedule import FULL, REUSE, Action


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """Use with `pytestmark = pytest.mark.usefixtures("torch_one_thread")` (shared 2-core machines)."""
    with one_thread():
        yield


def kind(action: Action) -> str:
    return "full" if action == FULL else "reuse" if action == REUSE else "shallow"


@contextlib.contextmanager
def recorded_calls(unet: torch.nn.Module) -> Iterator[list[str]]:
    """Per U-Net call: "full" (the mid block's own forward ran), "shallow" (the body ran, the mid block
    came from the cache) or "reuse" (the body did not run)."""
    calls: list[str] = []
    hooks = [unet.register_forward_pre_hook(lambda *_: calls.append("reuse")),
             unet.conv_in.register_forward_pre_hook(lambda *_: calls.__setitem__(-1, "shallow")),
             unet.mid_block.resnets[0].register_forward_pre_hook(lambda *_: calls.__setitem__(-1, "full"))]
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()
