"""The torch effector: carries out a :class:`~trainguard.core.policies.Plan` on gradients, LRs, the optimizer,
the model and its snapshots. The decisions are the core's (:class:`trainguard.core.session.PolicyRepair`).

- ``before_update`` (the guard calls it before the optimizer step, with a :class:`StepContext`): skip (the
  optimizer is not stepped at all, so momentum and Adam moments stay untouched), clip (``clip_grad_norm_``'s
  arithmetic, by value, unit-wise AGC), a batch's gradient weighed by its size, scale the LRs for this one
  optimizer step, prepare the StableAdamW cap, copy the tensors whose update is multiplied (``update_scale``).
  On CPU the decision reads the step's norm (free there). On an accelerator it is made on the device: the apply
  flag and the clip factor are tensors, and the guard hands the flag to a fused optimizer as AMP's ``found_inf``
  (no host sync); other optimizers read it once per step, as GradScaler does.
- after the optimizer step (a step post-hook): the LRs are put back exactly as they were, so a user's LR
  scheduler, which reads and writes ``param_group['lr']``, never sees the back-off; the Adam update cap.
- ``executed`` / ``carry_out`` (the session calls them once the step's statistics are fetched): the skip or clip
  the standing orders made of the step, then the one-shot orders (snapshot, rollback, moment reset, modules
  back to train mode) and the next standing orders. An order it cannot carry out at all (ReDo with no
  Linear/Conv right before the ReLU, an epsilon for an optimizer without one) is reported back as a
  :class:`~trainguard.core.policies.Refusal`, so that a trial of it ends at once.

A rollback is all or nothing: the snapshot is checked against the current model and optimizer before anything
is touched, and a restore that fails half-way puts back what it had already changed (see ``snapshot.py``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch

from trainguard.adapters.torch.hooks import SIGMOID_SATURATION, TANH_SATURATION, activation_kind
from trainguard.adapters.torch.snapshot import SnapshotStore, restore_snapshot, take_snapshot
from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.policies import Plan, Refusal, step_decision
from trainguard.core.session import NOTHING, Carried, standing
from trainguard.core.stats import StepStats

__all__ = ["TorchEffector", "unitwise_clip_", "recycle_dormant_units", "shrink_saturated_units",
           "renormalize_next_batch"]

_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s
_NO_DORMANT_UNIT = "no unit before the ReLU had an all-zero gradient row on this step's batch"
_NO_SATURATED_UNIT = "no unit before the activation can reach beyond its saturation bound"


def _quiet(plan: Plan, host: list[float]) -> bool:
    """Whether :func:`step_decision` surely applies the step unclipped, judged from the step vector read on the
    host (``[loss, ||g_1||, ...]``): every value finite and the global norm below both thresholds by a margin
    far wider than the float32 rounding of the norm the exact decision uses (relative 1e-6 for a few thousand
    tensors). Otherwise the exact decision runs."""
    limit = min(plan.skip_above, plan.clip_norm)
    if limit == math.inf:
        return all(math.isfinite(v) for v in host)
    return math.hypot(*host[1:]) < limit * (1.0 - 1e-4) and math.isfinite(host[0])


def unitwise_clip_(params: list[torch.Tensor], grads: list[torch.Tensor], clipping: float,
                   eps: float = 1e-3) -> None:
    """AGC (Brock et al. 2021) in place: each unit's gradient norm to at most ``clipping * max(||W_unit||, eps)``."""
    for p, g in zip(params, grads):
        if p.ndim <= 1:
            w_norm, g_norm = p.detach().abs(), g.abs()
        else:
            dims = tuple(range(1, p.ndim))
            w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True)
            g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
        max_norm = clipping * w_norm.clamp_min(eps)
        g.copy_(torch.where(g_norm > max_norm, g * (max_norm / g_norm.clamp_min(1e-6)), g))


def equalize_layer_ratios_(params: list[torch.Tensor], max_boost: float) -> None:
    """LARS-style (You et al. 2017), in place: each weight tensor's (ndim >= 2) gradient rescaled so that its
    ||g|| / ||w|| equals the largest among them, boosted at most ``max_boost`` times; 1-d parameters untouched."""
    weights = [p for p in params if p.ndim >= 2 and p.grad is not None]
    if len(weights) < 2:
        return
    grad_norms = torch.stack(torch._foreach_norm([p.grad for p in weights]))
    weight_norms = torch.stack(torch._foreach_norm([p.detach() for p in weights]))
    ratios = grad_norms / weight_norms.clamp_min(1e-12)
    boost = (ratios.max() / ratios.clamp_min(1e-30)).clamp(1.0, max_boost)
    boost = torch.where(torch.isfinite(boost), boost, torch.ones_like(boost))
    torch._foreach_mul_([p.grad for p in weights], list(boost.unbind()))


_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def _siblings(model: torch.nn.Module, name: str) -> tuple[list[torch.nn.Module], int]:
    """The children of the container that holds the module ``name``, and its index among them; ``([], -1)`` when
    ``name`` is no module (the probe's record of an activation called as a function: ``"fc->tanh"``)."""
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        return [], -1
    names = [n for n, _ in parent.named_children()]
    return (list(parent.children()), names.index(child)) if child in names else ([], -1)


def _around(model: torch.nn.Module, relu_name: str) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """The Linear/Conv layer feeding the ReLU module ``relu_name`` and the first one after it, siblings in the
    same container (an ``nn.Sequential``); None where there is none."""
    modules, i = _siblings(model, relu_name)
    if i < 0:
        return None, None
    before = modules[i - 1] if i > 0 and isinstance(modules[i - 1], _LAYERS) else None
    after = next((m for m in modules[i + 1:] if isinstance(m, _LAYERS)), None)
    return before, after


def recycle_dormant_units(model: torch.nn.Module, optimizer: torch.optim.Optimizer, relus: tuple[str, ...],
                          seed: int) -> dict[str, Any]:
    """ReDo (Sokar et al. 2023) on the units before each ReLU module named: a unit whose incoming gradient row
    is all zero on this step (its ReLU gave no positive output on the batch) gets its incoming weights and bias
    drawn again from ``nn.Linear``/``nn.ConvNd``'s default distribution, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    its outgoing weights in the next layer set to 0, and the optimizer's state of those rows and columns
    (momentum, Adam's moments) set to 0. A ReLU that feeds no further Linear/Conv (the model's output unit) has
    no outgoing weights to zero, and a symmetric redraw leaves it dead on every input as often as not (keras_fit_
    relu_output_dies: 3 draws of 4): its draw is made non-negative, so that on non-negative inputs (a ReLU layer's
    outputs) it fires at once (after Lu et al. 2020, "Dying ReLU and Initialization", CiCP 28(5): symmetric draws
    of weights and biases are what lets ReLUs be born dead; their randomized asymmetric initialization). A
    generator of its own, seeded with the step: the user's RNG is untouched."""
    generator = torch.Generator().manual_seed(seed)
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    with torch.no_grad():
        for relu in relus:
            before, after = _around(model, relu)
            grad = before.weight.grad if before is not None else None
            if grad is None:
                done["not_applied"].append(f"{relu}: no Linear/Conv layer with a gradient right before it")
                continue
            rows = grad.reshape(grad.shape[0], -1).abs().sum(dim=1)
            if before.bias is not None and before.bias.grad is not None:
                rows = rows + before.bias.grad.abs()
            units = torch.nonzero(rows == 0).flatten()
            if units.numel() == 0:
                continue
            fan_in = before.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            sign = _redraw_sign(model, relu)
            fresh = (torch.rand((units.numel(),) + tuple(before.weight.shape[1:]), generator=generator) * 2 - 1)
            before.weight[units] = sign(fresh * bound).to(before.weight.dtype).to(before.weight.device)
            _zero_state(optimizer, before.weight, units, dim=0)
            if before.bias is not None:
                fresh_bias = torch.rand((units.numel(),), generator=generator) * 2 - 1
                before.bias[units] = sign(fresh_bias * bound).to(before.bias.dtype).to(before.bias.device)
                _zero_state(optimizer, before.bias, units, dim=0)
            if after is not None and after.weight.shape[1] == before.weight.shape[0]:
                after.weight[:, units] = 0
                _zero_state(optimizer, after.weight, units, dim=1)
            done["units"] += int(units.numel())
            done["layers"].append(relu)
    if not done["not_applied"]:
        del done["not_applied"]
    return done


def shrink_saturated_units(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           activations: tuple[str, ...]) -> dict[str, Any]:
    """LeCun et al. 1998 (``trainguard/core/policies/desaturate.py``): each unit of the Linear/Conv right before the
    tanh/sigmoid module named whose pre-activation can reach beyond the probe's saturation bound on inputs in
    [-1, 1] (``sum |w| + |b| > bound``; the layer's inputs come from a tanh or sigmoid, so they are in that range)
    gets its incoming weights and bias multiplied by ``bound / (sum |w| + |b|)``, and the optimizer's state of those
    rows set to 0 (momentum built up toward saturation)."""
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    with torch.no_grad():
        for name in activations:
            modules, i = _siblings(model, name)
            kind = activation_kind(modules[i]) if i >= 0 else None
            layer = modules[i - 1] if i >= 1 and isinstance(modules[i - 1], _LAYERS) else None
            bounded = i >= 2 and activation_kind(modules[i - 2]) in ("tanh", "sigmoid")
            if kind not in ("tanh", "sigmoid") or layer is None or not bounded:
                done["not_applied"].append(f"{name}: no Linear/Conv between two tanh/sigmoid modules before it "
                                           "(its inputs must be bounded to bound its pre-activations)")
                continue
            bound = TANH_SATURATION if kind == "tanh" else SIGMOID_SATURATION
            reach = layer.weight.abs().reshape(layer.weight.shape[0], -1).sum(dim=1)
            if layer.bias is not None:
                reach = reach + layer.bias.abs()
            units = torch.nonzero(reach > bound).flatten()
            if units.numel() == 0:
                continue
            factor = (bound / reach[units]).to(layer.weight.dtype)
            layer.weight[units] *= factor.reshape((-1,) + (1,) * (layer.weight.dim() - 1))
            _zero_state(optimizer, layer.weight, units, dim=0)
            if layer.bias is not None:
                layer.bias[units] *= factor
                _zero_state(optimizer, layer.bias, units, dim=0)
            done["units"] += int(units.numel())
            done["layers"].append(name)
    if not done["not_applied"]:
        del done["not_applied"]
    return done


def renormalize_next_batch(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           activations: tuple[str, ...]) -> tuple[dict[str, Any], list[Any]]:
    """Weight normalization's data-dependent initialization (Salimans & Kingma 2016, sec. 3; LSUV, Mishkin & Matas
    2016), once, on the Linear right before each tanh/sigmoid module named (``trainguard/core/policies/
    renormalize.py``): on the next forward pass, a hook on each layer reads its output over the batch, divides
    each unit's incoming weights by the standard deviation of its pre-activations and shifts its bias by their
    mean (mean 0, variance 1), sets the optimizer's state of the layer to 0, and hands the layer above the output
    recomputed with the new weights, so the layers are normalized in forward order, each on what the ones below
    now give. A batch of one sample, a unit constant over the batch or a non-finite output leave it as it is.
    Returns the effect and the hooks' handles (each removes itself once it has run)."""
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    handles: list[Any] = []
    for name in activations:
        modules, i = _siblings(model, name)
        layer = modules[i - 1] if i >= 1 and isinstance(modules[i - 1], torch.nn.Linear) else None
        if layer is None or activation_kind(modules[i]) not in ("tanh", "sigmoid"):
            done["not_applied"].append(f"{name}: no Linear right before this tanh/sigmoid module")
            continue
        own: list[Any] = []
        own.append(layer.register_forward_hook(_normalize_once(optimizer, own)))
        handles += own
        done["units"] += layer.out_features
        done["layers"].append(name)
    if not done["not_applied"]:
        del done["not_applied"]
    return done, handles


def _normalize_once(optimizer: torch.optim.Optimizer, own: list[Any]) -> Callable[..., Any]:
    def hook(layer: torch.nn.Linear, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        own[0].remove()
        z = output.detach().float().reshape(-1, layer.out_features)
        if z.shape[0] < 2 or not bool(torch.isfinite(z).all()):
            return None
        mean, std = z.mean(dim=0), z.std(dim=0)
        moved = std > 0
        scale = torch.where(moved, 1.0 / std.clamp_min(1e-30), torch.ones_like(std)).to(layer.weight.dtype)
        with torch.no_grad():
            layer.weight.mul_(scale[:, None])
            _zero_state(optimizer, layer.weight, torch.arange(layer.out_features), dim=0)
            if layer.bias is not None:
                layer.bias.sub_(torch.where(moved, mean, torch.zeros_like(mean)).to(layer.bias.dtype)).mul_(scale)
                _zero_state(optimizer, layer.bias, torch.arange(layer.out_features), dim=0)
        return torch.nn.functional.linear(inputs[0], layer.weight, layer.bias)
    return hook


def _redraw_sign(model: torch.nn.Module, relu_name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``abs`` for a ReLU after which no Linear/Conv is registered (the model's output unit), else the draw as it
    is."""
    names = [name for name, _ in model.named_modules()]
    later = names[names.index(relu_name) + 1:] if relu_name in names else []
    feeds = any(isinstance(model.get_submodule(name), _LAYERS) for name in later)
    return (lambda t: t) if feeds else torch.abs


def _zero_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, units: torch.Tensor, dim: int) -> None:
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.index_fill_(dim, units.to(value.device), 0)


class TorchEffector:
    """See the module docstring. ``step`` says the guard's current step (the label of a snapshot taken now)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 step: Callable[[], int], snapshots: bool):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._step = step
        self.plan = Plan()
        self.snapshots = SnapshotStore(keep=1) if snapshots else None
        self._plans: dict[int, Plan] = {}  # plan in force at each step not yet observed
        self._skip_left = 0  # batches still to skip after a rollback
        self._skipped: list[int] = []  # steps skipped since the last rollback
        self._rollback: Action | None = None
        self._saved_lrs: list[Any] | None = None
        self._adam_cap: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._scaled: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (tensor, before the step, factor)
        self._renormalizing: list[Any] = []  # the hooks of a renormalization still to run (renormalize_next_batch)
        # An optimizer without step hooks (not a torch.optim.Optimizer) gets its LRs back at the next call instead.
        register = getattr(optimizer, "register_step_post_hook", None)
        self._hook = register(self._after_optimizer_step) if callable(register) else None

    def stand(self, plan: Plan) -> None:
        self.plan = standing(plan)

    # ------------------------------------------------------------ before the update
    def before_update(self, ctx: Any) -> bool | torch.Tensor:
        self._restore_lrs()
        if self._adam_cap:
            self._adam_cap = []
        self._scaled = []
        if self.snapshots is not None and not self.snapshots.snapshots:
            self.snapshots.add(take_snapshot(ctx.step, self.model, self.optimizer, self.scheduler))
        if self._skip_left > 0:
            self._skip_left -= 1
            self._skipped.append(ctx.step)
            return False
        plan = self.plan
        self._plans[ctx.step] = plan
        if not plan.acts_per_step:
            return True
        apply: bool | torch.Tensor = True
        if ctx.host is not None and _quiet(plan, ctx.host):
            pass  # neither skipped nor clipped, whatever the float32 rounding of the norm: no kernel needed
        elif ctx.vector.device.type == "cpu":
            decision = step_decision(plan, bool(ctx.finite), float(ctx.grad_norm), _EPS)
            if not decision.apply:
                return False
            if decision.clip_coef < 1.0:
                torch._foreach_mul_([p.grad for p in ctx.params], decision.clip_coef)
        else:
            apply = self._decide_on_device(plan, ctx, [p.grad for p in ctx.params])
        if plan.batch_weight is not None:
            usual, power = plan.batch_weight
            size = getattr(ctx, "batch_size", None)
            if size and size != usual:  # a batch's gradient weighs what a full batch's does
                torch._foreach_mul_([p.grad for p in ctx.params], (size / usual) ** power)
        if plan.layer_trust is not None:
            equalize_layer_ratios_(ctx.params, plan.layer_trust)
        if plan.clip_value < math.inf:
            torch.nn.utils.clip_grad_value_(ctx.params, plan.clip_value)
        if plan.agc_clipping is not None:
            unitwise_clip_(ctx.params, [p.grad for p in ctx.params], plan.agc_clipping)
        if plan.adam_update_cap is not None:
            self._prepare_adam_cap(plan.adam_update_cap)
        if plan.update_scale:
            self._scaled = [(p, p.detach().clone(), factor) for _, p, factor in self._scalable(plan.update_scale)[0]]
        if plan.lr_scale != 1.0:
            self._scale_lrs(plan.lr_scale)
        return apply

    def _scalable(self, orders: tuple[tuple[str, float], ...]) -> tuple[list[tuple[str, torch.Tensor, float]],
                                                                          list[str]]:
        """The named parameters whose update can be multiplied, and why the others cannot: a name the model does
        not have, or a tensor under decoupled weight decay (the decay, part of the update, would be multiplied
        too)."""
        params = dict(self.model.named_parameters())
        decayed = {id(p) for group in self.optimizer.param_groups if group.get("weight_decay")
                   for p in group["params"]}
        found, why = [], []
        for name, factor in orders:
            p = params.get(name)
            if p is None:
                why.append(f"{name}: no parameter of that name")
            elif id(p) in decayed:
                why.append(f"{name}: under weight decay, which the multiplied update would scale too")
            else:
                found.append((name, p, factor))
        return found, why

    @staticmethod
    def _decide_on_device(plan: Plan, ctx: Any, grads: list[torch.Tensor]) -> torch.Tensor:
        """The same decision as :func:`step_decision`, as tensors: no value leaves the device."""
        norm, finite = ctx.grad_norm, ctx.finite
        apply = finite.clone() if plan.skip_non_finite else torch.ones_like(finite)
        if plan.skip_above < math.inf:
            apply &= norm <= plan.skip_above
        if plan.clip_norm < math.inf:
            coef = torch.clamp(plan.clip_norm / (norm + _EPS), max=1.0)
            torch._foreach_mul_(grads, torch.where(finite, coef, torch.ones_like(coef)))
        return apply

    def _scale_lrs(self, scale: float) -> None:
        groups = self.optimizer.param_groups
        self._saved_lrs = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] = group["lr"] * scale

    def _restore_lrs(self) -> None:
        if self._saved_lrs is not None:
            for group, lr in zip(self.optimizer.param_groups, self._saved_lrs):
                group["lr"] = lr
            self._saved_lrs = None

    def _prepare_adam_cap(self, cap: float) -> None:
        """StableAdamW (Wortsman et al. 2023): each tensor's update shrinks by ``min(1, cap / RMS)``, RMS of
        ``g / sqrt(v_hat)`` with this step's second moment. The weights are copied so the cap can be applied
        after the optimizer step."""
        optimizer = self.optimizer
        for group in optimizer.param_groups:
            betas, eps = group.get("betas"), float(group.get("eps", 1e-8))
            if betas is None:
                continue
            beta2 = float(betas[1])
            for p in group["params"]:
                state = optimizer.state.get(p)
                if p.grad is None or not state or "exp_avg_sq" not in state:
                    continue
                g = p.grad.detach().float()
                t = float(state["step"]) + 1.0
                v_hat = (beta2 * state["exp_avg_sq"].float() + (1 - beta2) * g * g) / (1 - beta2 ** t)
                rms = torch.sqrt(torch.mean(g * g / torch.clamp(v_hat, min=eps * eps)))
                factor = torch.clamp(cap / rms, max=1.0)
                self._adam_cap.append((p, p.detach().clone(), factor))

    def _after_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._restore_lrs()
        if self._scaled:  # the update of a reparametrized tensor: W' = W / s moves s times as far in W
            with torch.no_grad():
                for p, before, factor in self._scaled:
                    p.copy_(before + (p - before) * factor)
            self._scaled = []
        if not self._adam_cap:
            return
        with torch.no_grad():
            for p, before, factor in self._adam_cap:
                capped = before + (p - before) * factor
                p.copy_(torch.where(factor < 1.0, capped, p))
        self._adam_cap = []

    # ------------------------------------------------------------- after the update
    def executed(self, stats: StepStats, findings: tuple[Finding, ...]) -> list[Action]:
        """The skip or clip that the standing orders made of this step, as actions."""
        if self._hook is None:
            self._after_optimizer_step(None, None, None)
        self._restore_lrs()  # a skipped step never reached the post-hook; the user's scheduler steps next
        plan = self._plans.pop(stats.step, None)
        if self._plans:
            for old in [s for s in self._plans if s < stats.step]:
                del self._plans[old]
        if plan is None or not plan.acts_per_step:
            return []
        norm = stats.grad_norm if stats.grad_norm is not None else math.nan
        if stats.clip_max_norm is not None and math.isfinite(norm):  # the run clips first: decided on that norm
            norm = norm * min(1.0, stats.clip_max_norm / (norm + _EPS))
        decision = step_decision(plan, stats.loss_finite and stats.grads_finite, norm, _EPS)
        if decision.apply and decision.clip_coef >= 1.0:
            return []
        reason = next((f.code for f in findings if f.code in ("non_finite", "exploding_gradient", "loss_spike")),
                      decision.reason)
        if not decision.apply:
            return [Action("skip_step", stats.step, reason, {"grad_norm": norm, "skip_above": plan.skip_above,
                                                             "why": decision.reason}, {})]
        return [Action("clip", stats.step, "grad_outlier" if reason == "clip" else reason,
                       {"max_norm": plan.clip_norm, "grad_norm": norm, "coef": decision.clip_coef}, {})]

    def carry_out(self, plan: Plan, stats: StepStats) -> Carried:
        stop = None
        if plan.snapshot and self.snapshots is not None:
            self.snapshots.keep = plan.snapshot
            self.snapshots.add(take_snapshot(self._step(), self.model, self.optimizer, self.scheduler),
                               pinned=plan.keep_snapshot)
        if plan.rollback is not None and self.snapshots is not None:
            stop = self._restore(plan, stats)
        if plan.reset_moments:
            for state in self.optimizer.state.values():
                for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if isinstance(state.get(key), torch.Tensor):
                        state[key].zero_()
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"].zero_()
                elif "step" in state:
                    state["step"] = 0
        effects: dict[str, dict[str, Any]] = {}
        refused: list[Refusal] = []
        if plan.adam_eps is not None:
            effects["adam_epsilon"] = raised = self._raise_eps(plan.adam_eps)
            if raised.get("applied") is False:
                refused.append(Refusal("adam_eps", raised["why"]))
        if plan.recycle_units:
            effects["recycle_dormant"] = recycled = recycle_dormant_units(self.model, self.optimizer,
                                                                          plan.recycle_units, seed=stats.step)
            if not recycled["units"]:
                refused.append(Refusal("recycle_units", "; ".join(recycled.get("not_applied", [_NO_DORMANT_UNIT]))))
        if plan.desaturate:
            effects["shrink_saturated_output"] = shrunk = shrink_saturated_units(self.model, self.optimizer,
                                                                                 plan.desaturate)
            if not shrunk["units"]:
                refused.append(Refusal("desaturate", "; ".join(shrunk.get("not_applied", [_NO_SATURATED_UNIT]))))
        if plan.renormalize:
            done, self._renormalizing = renormalize_next_batch(self.model, self.optimizer, plan.renormalize)
            effects["renormalize_saturating_layers"] = done
            if not done["units"]:
                refused.append(Refusal("renormalize", "; ".join(done["not_applied"])))
        if plan.update_scale and any(a.kind == "scale_output_steps" for a in plan.actions):
            found, why = self._scalable(plan.update_scale)
            if found:
                effects["scale_output_steps"] = {"tensors": [name for name, _, _ in found],
                                                 **({"not_scaled": why} if why else {})}
            else:
                refused.append(Refusal("update_scale", "; ".join(why)))
        for name in plan.restore_modules:
            self.model.get_submodule(name).train(True)
        for action in plan.actions:
            if action.kind == "restore_mode":
                modules = ", ".join(action.params["modules"])
                what = "put back in train mode" if action.params["restored"] else "left as they are"
                warnings.warn(f"trainguard: modules in eval mode while training at step {action.step}: {modules} "
                              f"({what}); call model.train() before training", UserWarning, stacklevel=5)
        self.stand(plan)
        if self._rollback is not None and self._skip_left == 0 and self._skipped and stats.step >= self._skipped[-1]:
            return Carried(effects=effects, actions=(self._skipped_record(),), stop=stop, refused=tuple(refused))
        return NOTHING if stop is None and not effects else Carried(effects=effects, stop=stop, refused=tuple(refused))

    def _raise_eps(self, eps: float) -> dict[str, Any]:
        """Adam's ``eps`` to at least ``eps`` in every param group that has one, and at least the smallest normal
        number of the group's parameter dtype (6.1e-5 in float16, 1.2e-38 in float32 and bfloat16): in float16 a
        second moment ``(1 - beta2) g^2`` underflows to 0 for ``|g| < 7.7e-3`` and 1e-8 or 1e-10 round to 0, so
        ``eps`` alone carries the division there and must be a number the dtype holds at full precision. Not more:
        a pure-float16 weight loses every update below half its spacing (Micikevicius et al. 2018), and each step
        shrinks as ``g / eps`` where ``v`` underflowed (7.8e-3 froze a float16 reward model at lr 1e-5)."""
        before, after = [], []
        for group in self.optimizer.param_groups:
            if "eps" not in group or not isinstance(group["eps"], (int, float)):
                continue
            dtypes = {p.dtype for p in group["params"] if p.is_floating_point()}
            floor = max((torch.finfo(d).tiny for d in dtypes), default=0.0)
            target = max(eps, floor)
            before.append(group["eps"])
            if group["eps"] < target:
                group["eps"] = target
            after.append(group["eps"])
        if not after:
            return {"applied": False, "why": "the optimizer has no eps"}
        return {"eps_before": max(before), "eps": max(after)}

    def _restore(self, plan: Plan, stats: StepStats) -> str | None:
        order = plan.rollback
        candidates = [s for s in self.snapshots.snapshots if s.label <= order.label]
        if not candidates:
            return f"rollback ordered at step {stats.step} but no snapshot at or before {order.label}"
        snap = candidates[-1]
        restore_snapshot(snap, self.model, self.optimizer, self.scheduler)
        self.snapshots.forget_after(snap.label)
        self._skip_left = order.skip_batches
        self._skipped = []
        self._rollback = next((a for a in plan.actions if a.kind == "rollback"), None)
        return None

    def _skipped_record(self) -> Action:
        rollback, steps = self._rollback, self._skipped
        self._rollback, self._skipped = None, []
        return Action("skip_batches", steps[0], "rollback",
                      {"steps": steps, "count": len(steps), "after_rollback_at": rollback.step if rollback else None},
                      {})

    def forget_snapshots(self) -> None:
        """The parameters changed (``add_param_group``): the snapshots no longer fit; a fresh one is taken before
        the next update."""
        if self.snapshots is not None:
            self.snapshots.snapshots = []

    # ----------------------------------------------------------------------- close
    def release(self) -> None:
        """Leaves the optimizer and the model as it found them: the LRs back, its step hook and any
        renormalization hook still to run removed."""
        self._restore_lrs()
        for handle in self._renormalizing:
            handle.remove()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def close(self) -> Carried:
        self.release()
        actions = (self._skipped_record(),) if self._skipped else ()
        events = ()
        if self.snapshots is not None:
            events = (("snapshots", {"held": len(self.snapshots.snapshots), "bytes_held": self.snapshots.nbytes,
                                     "bytes_peak": self.snapshots.peak_nbytes}),)
        return Carried(actions=actions, events=events)
