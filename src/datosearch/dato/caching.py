"""Feature caching: the per-call plan on the U-Net, DeepCache shallow branches on its blocks.

A shallow call with branch `b` (DeepCache's `cache_branch_id`) runs only the modules outside the
cut at down block `b // stride`, layer `b % stride`; the modules inside the cut return the output
they produced at their last run. A reuse call runs nothing and returns the last noise prediction.

ControlNet residuals (and T2I-Adapter ones) are added by the U-Net's own forward to the skip
connections and the mid block output. DeepCache's cut is symmetric: the computed outer up layers
consume only skip connections of computed outer down layers, so on a shallow call they get this
call's residuals, and the residuals of the skipped blocks act as they did at the last full call,
inside the cached deep features. The ControlNet itself still runs on every call (the pipeline calls it).

Forecasting calls predict instead of reusing, but only the tensor that is consumed: on a shallow
call the output of the last cut module (`consumed_module`), on a reuse call the noise prediction
(`EPS`). Their histories are fed by full calls only (`forecast.History`).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import ModelHook
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from ..space.layout import branch_stride
from ..space.schedule import FULL, REUSE, ScheduleError
from .forecast import main_tensor, with_main_tensor
from .state import DaToContext

EPS = "<noise prediction>"  # forecast path of reuse calls


def skipped_modules(unet: torch.nn.Module, branch: int) -> list[str]:
    """Paths of the outermost modules that a shallow call with `branch` takes from the cache."""
    block, layer = divmod(branch, branch_stride(unet))
    out: list[str] = []
    for i, down in enumerate(unet.down_blocks):
        if i > block or (i == block and layer == 0):
            out.append(f"down_blocks.{i}")
        elif i == block:
            for j in range(layer, len(down.resnets)):
                out.append(f"down_blocks.{i}.resnets.{j}")
                if hasattr(down, "attentions"):
                    out.append(f"down_blocks.{i}.attentions.{j}")
            if down.downsamplers is not None:
                out.append(f"down_blocks.{i}.downsamplers.0")
    out.append("mid_block")
    n_up = len(unet.up_blocks)
    for j, up in enumerate(unet.up_blocks):
        depth = n_up - 1 - j  # DeepCache numbers up blocks from the output side
        if depth > block:
            out.append(f"up_blocks.{j}")
        elif depth == block:
            n_layers = len(up.resnets)
            for k in range(n_layers):
                if n_layers - 1 - k > layer:
                    out.append(f"up_blocks.{j}.resnets.{k}")
                    if hasattr(up, "attentions"):
                        out.append(f"up_blocks.{j}.attentions.{k}")
    return out


def consumed_module(unet: torch.nn.Module, branch: int) -> str:
    """The cut module whose output the computed part of a shallow call consumes (the last to run)."""
    return skipped_modules(unet, branch)[-1]


class ModuleCacheHook(ModelHook):
    """Returns the cached output on shallow calls whose branch cuts this module; refreshes it otherwise.

    For the branches in `forecast_for` (this module is their consumed tensor) it also keeps the
    last `history` full-call outputs and returns a forecast on calls that ask for one.
    """

    def __init__(self, ctx: DaToContext, path: str, branches: frozenset[int],
                 forecast_for: frozenset[int] = frozenset(), history: int = 0) -> None:
        super().__init__()
        self.ctx, self.path, self.branches = ctx, path, branches
        self.forecast_for, self.history = forecast_for, history

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        st = self.ctx.state()
        if isinstance(st.action, int) and st.action in self.branches:
            cached = st.features[self.path]
            if st.forecast is None or st.action not in self.forecast_for:
                return cached
            return with_main_tensor(cached, st.predict(self.path, main_tensor(cached)))
        out = self.fn_ref.original_forward(*args, **kwargs)
        st.features[self.path] = out
        if self.history and st.action == FULL:
            st.remember(self.path, self.history, main_tensor(out))
        return out


class UNetPlanHook(ModelHook):
    """Counts U-Net calls, sets the call's action, short-circuits reuse calls, records predictions.

    An exception inside the U-Net drops the generation's state; a bare U-Net's state is also dropped
    after the plan's last call (a pipeline's when its denoising loop ends, `dato.generation`).
    """

    _is_stateful = True

    def __init__(self, ctx: DaToContext, track_dynamics: bool, eps_history: int = 0) -> None:
        super().__init__()
        self.ctx, self.track_dynamics, self.eps_history = ctx, track_dynamics, eps_history

    def new_forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = self.ctx
        try:
            result = self._call(ctx, sample, timestep, *args, **kwargs)
        except BaseException:
            ctx.reset()  # an interrupted generation leaves no cache behind
            raise
        st = ctx.state()
        st.call += 1
        if st.call == len(st.plan.cache) and not ctx.bounded:
            ctx.reset()  # a bare U-Net's generation is over: the next call starts a new one
        return result

    def _call(self, ctx: DaToContext, sample: torch.Tensor, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        st = ctx.state()
        if st.plan is None:
            st.plan = ctx.first_call(timestep)
        elif st.call >= len(st.plan.cache):
            raise ScheduleError(f"the pipeline made more U-Net calls than the {len(st.plan.cache)} its scheduler's "
                                f"timesteps leave for this run, so datosearch cannot follow its loop")
        st.action = st.plan.cache[st.call]
        st.forecast = st.plan.forecast.get(st.call)
        st.cfg = ctx.cfg()
        st.latent_hw = tuple(sample.shape[-2:])
        st.dynamics.clear()
        if st.action == REUSE:
            pred = st.predict(EPS, st.last_output)
            return UNet2DConditionOutput(sample=pred) if kwargs.get("return_dict", True) else (pred,)
        result = self.fn_ref.original_forward(sample, timestep, *args, **kwargs)
        pred = result[0] if isinstance(result, tuple) else result.sample
        st.last_output = pred
        if self.track_dynamics:
            st.eps = [*st.eps[-1:], pred]
        if self.eps_history and st.action == FULL:
            st.remember(EPS, self.eps_history, pred)
        return result

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.ctx.reset()
        return module
