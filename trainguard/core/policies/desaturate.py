"""``shrink_saturated_output``: an output tanh/sigmoid stuck in saturation on the wrong side, the incoming weights of
its units scaled back to where the activation bends (a trial repair).

LeCun et al., "Efficient BackProp" (1998), sec. 4.5: targets at a sigmoid's (or tanh's) asymptotes drive the
output units into saturation; their weights grow ever larger, and a unit saturated on the wrong side has a large
error times a slope ~0, so nothing moves it back (Stack Overflow 13632976: "the error becomes almost 0"). The
paper's remedy is to keep the pre-activations where the function still bends: targets inside the range, or a
scaled activation, and initial weights small enough for the inputs (sec. 4.6). Online, without changing what the
model computes, the weights are brought back to that range once: each unit of the layer that feeds the saturated
activation whose pre-activation can reach beyond the saturation bound (``sum |w| + |b| > bound``, the bound the
probe counts saturation by: 2.5 for tanh, 5 for sigmoid) on inputs in [-1, 1] (a tanh or sigmoid before the layer)
gets its incoming weights and bias multiplied by ``bound / (sum |w| + |b|)``: on every input it is back where its
slope is at least ~3% of its maximum, and the error reaches the weights again. Max-norm constraints
(Srivastava et al. 2014, sec. 5.1) bound a unit's incoming weights the same way, as a standing rule; here it is
done once, and the run may grow them again where the data asks for it.

Evidence: the ``saturated_activation`` WARNING on the model's final activation (``activation_health``'s
``error_without_gradient`` rule: the worst steps' loss >= 100x the window's median with a gradient norm < 10x its
median, on consecutive samples). Replayed on every dev ``observe`` log of the corpus (29 healthy programs, 34
fixed twins, 34 faulty): it is raised in ``torch_so13632976`` only (at step 450), so no healthy run gets the repair.
Tried as every trial is (:mod:`.trial`), over ``window`` (500) steps (a per-sample SGD
loss is noisy), kept only if the mean loss of the window's second half falls measurably below the mean before
(``Proposal.by_mean``: the stuck samples are a few, which the median ignores). The adapter carries it out on the layer that
computes the activation's pre-activations (torch: a Linear/Conv right before it; Keras: the Dense/Conv with that
activation, or the linear one before an ``Activation`` layer, on every backend) when its inputs come from a tanh or
sigmoid (bounded), and says so otherwise (the trial ends, not applied).
"""
from __future__ import annotations

from trainguard.core.findings import Severity
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["shrink_saturated_output"]

FIX = ("Targets at the output activation's asymptotes saturate it: use 1.7159 * tanh(2x/3) (LeCun et al. 1998, "
       "'Efficient BackProp') or targets inside its range (+-0.65 for tanh); for classes, logits with a "
       "cross-entropy loss.")


def shrink_saturated_output(window: int = 500) -> Repair:
    if window < 1:
        raise ValueError("shrink_saturated_output needs window >= 1")

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: None):
        stuck = [f for f in findings if f.code == "saturated_activation" and f.where and f.severity >= Severity.WARNING
                 and f.evidence.get("final_activation") is True]
        if not stuck:
            return None, st
        params = {"cause": "saturated_activation", "modules": [f.where for f in stuck]}
        return Proposal("saturated_activation", params, FIX, by_mean=True), st

    def once(plan: Plan, params: dict) -> Plan:
        return plan._replace(desaturate=tuple(dict.fromkeys(plan.desaturate + tuple(params["modules"]))))

    return Repair("shrink_saturated_output", lambda: None, propose, lambda plan, params: plan, once=once,
                  window=window)
