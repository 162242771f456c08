"""The torch guard inside trainers that take the optimizer step themselves: Lightning (``lightning.py``) and HF
Transformers (``hf.py``), each a callback that composes a :class:`~trainguard.adapters.torch.guard.Guard` through
:class:`~.trainer_step.TrainerStepGuard`, configured by one :class:`~.options.GuardOptions`. Imported by
``trainguard.lightning`` and ``trainguard.hf``, which need their trainer installed."""
