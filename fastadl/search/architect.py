"""The search's iteration (docs/METHOD.md §3): the architecture step of the first-order
bilevel search (Architect) and SearchIteration, the one builder of a whole iteration (weight
step, then α/β step) that the search, the self-check and benchmarks/bench_search_step.py all
run, so what is checked and timed is what a search executes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from fastadl.nn.search.compile import compile_regions
from fastadl.runtime import distributed as dist
from fastadl.runtime.distributed import all_reduce_mean
from fastadl.runtime.precision import Precision
from fastadl.runtime.steps import (
    FiniteWatch,
    frozen,
    micro_batches,
    segmentation_loss,
    set_lr,
    stepped_parameters,
    weight_step,
)
from fastadl.search.arch_stats import alpha_decay, alpha_entropy
from fastadl.search.flat_sgd import search_weight_optimizer


def adam(params: list[nn.Parameter], **kwargs) -> torch.optim.Adam:
    """torch.optim.Adam whose step needs no host synchronisation: the fused implementation
    (one kernel, its step counters on the device; on the CPU the same numbers as the default
    one, tests/search/test_sync_free_steps.py), else ``capturable`` off the CPU (where torch allows
    it), else the default one (which reads each parameter's step counter on the host)."""
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        pass
    if params[0].device.type != "cpu":
        try:
            return torch.optim.Adam(params, capturable=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, **kwargs)


class Architect:
    """Adam on α and β with gradients from a trainB batch.

    ``torch.autograd.grad(loss, [α, β])`` asks autograd for the architecture gradients only,
    with the weights frozen for the step: every backward then skips the weight-gradient work
    (native convolutions are told which gradients are wanted; the cell-level fast path's
    hand-written backward sees which inputs require them), and nothing lands in the weights'
    ``.grad``.
    """

    def __init__(
        self,
        model: nn.Module,
        arch_params: list[nn.Parameter],
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        precision: Precision,
        regularizer: Callable[[], torch.Tensor] | None = None,
    ):
        """regularizer: a 0-d tensor computed from the architecture parameters alone (e.g. a
        collapse guard's entropy term), added to every step's loss; None = none."""
        self.model = model
        self.regularizer = regularizer
        self.params = arch_params
        arch = {id(p) for p in arch_params}
        self.weights = [p for p in model.parameters() if id(p) not in arch and p.requires_grad]
        self.optimizer = adam(self.params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.precision = precision
        self.scaler = precision.make_scaler()

    def step(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        step: int,
        accumulate: int = 1,
        watch: FiniteWatch | None = None,
    ) -> torch.Tensor:
        """One Adam step on α, β from (images (N,3,H,W), masks (N,H,W)); returns the mean
        loss, a 0-d tensor.

        ``self.model`` is the bare module even under DDP: gradients of α and β are averaged
        over processes here, so DDP's weight-gradient buckets never run for this step.
        watch: where a non-finite loss or α/β gradient is noted for ``step`` on the device (see
        runtime/steps.py's weight_step); None: checked now, before α and β change.
        """
        check_now = watch is None
        watch = FiniteWatch() if check_now else watch
        grads = [torch.zeros_like(p) for p in self.params]
        losses = []
        parts = micro_batches(images, masks, accumulate)
        for x, y in parts:
            with frozen(self.weights), self.precision.autocast():
                loss = segmentation_loss(self.model(x), y)
            part = torch.autograd.grad(self.scaler.scale(loss / len(parts)), self.params)
            grads = [g + d for g, d in zip(grads, part, strict=True)]
            losses.append(loss.detach())
        watch.note("architecture loss", losses, step)
        if self.regularizer is not None:
            # once per step, outside the micro-batches (it does not depend on the batch)
            reg = self.scaler.scale(self.regularizer())
            extra = torch.autograd.grad(reg, self.params, allow_unused=True)
            grads = [g if d is None else g + d for g, d in zip(grads, extra, strict=True)]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = all_reduce_mean(g).to(p.dtype)
        if not self.scaler.is_enabled():  # fp16: an inf gradient is the scaler's business
            watch.note("α/β gradient", [p.grad for p in self.params], step)
        if check_now:
            watch.check()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return torch.stack(losses).mean() if len(losses) > 1 else losses[0]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


def arch_regularizer(alphas: torch.Tensor, entropy: float, decay: float, cost=None):
    """The α/β loss's extra terms, None when all are off: ``entropy`` · mean normalised
    entropy of softmax(α) (pushes each edge towards one op, shrinking the gap between the mixed
    supernet and the decoded cell), ``decay`` · β-DARTS' beta-decay (arch_stats.alpha_decay) and
    ``cost``(α), a budget's penalty (fastadl/budget/search_term.py; None: no budget)."""
    if not (entropy or decay or cost):
        return None
    terms = [(w, f) for w, f in ((entropy, alpha_entropy), (decay, alpha_decay)) if w]
    if cost is not None:
        terms.append((1.0, cost))
    return lambda: sum(w * f(alphas) for w, f in terms)


def search_tf32() -> None:
    """The search's TF32 setting, made explicit: TF32 in cuDNN convolutions (the supernet's
    work; torch's default), none in matmuls (torch's default; the heads' few are cheap). The
    legacy flags, as fastadl/agreement.py's exact_fp32 (which turns both off for comparisons)
    uses them: torch refuses a mix of its two TF32 interfaces. No effect on the CPU."""
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False


def search_forward(model: nn.Module, cfg) -> nn.Module:
    """What the weight step calls: the model, DDP-wrapped under several processes. With
    ``cfg.compile`` its repeated regions are compiled in place (fastadl/nn/search/compile.py), so
    the α/β step, which calls the model itself, runs them too, and validation (eval mode,
    no_grad) runs them eagerly. (The one place compilation is decided.)"""
    if cfg.compile:
        compile_regions(model)
    forward: nn.Module = model
    if dist.world_size() > 1:
        # α/β are left out of DDP (requires_grad off while wrapping): the weight step never
        # needs them and the architecture step averages their gradients itself.
        with frozen(model.arch_parameters()):
            forward = nn.parallel.DistributedDataParallel(model)
    return forward


class SearchIteration:
    """Everything one search iteration needs, built as the search builds it from a
    SearchConfig ``cfg`` (amp, w_lr, w_momentum, w_weight_decay, arch_lr, arch_beta1/2,
    arch_weight_decay, arch_entropy_weight, alpha_decay_weight, accumulate, grad_clip,
    compile): the search's TF32 setting, the Precision, FlatSGD over the weights with its
    GradScaler, the Architect (Adam on α, β, its own scaler, the collapse guards' regularizer and
    ``budget``'s penalty when a cost target is set),
    the FiniteWatch the loop reads, and the forward (compiled / DDP-wrapped as configured).

    model: a SuperNet on ``device`` with its final dtype (FlatSGD re-points its weights into
    one flat buffer). ``w_opt``, ``w_scaler`` and ``architect`` are the checkpointed state."""

    def __init__(self, model: nn.Module, cfg, device: torch.device, budget=None):
        search_tf32()
        self.model = model
        self.precision = Precision(cfg.amp, device.type)
        self.arch_params = model.arch_parameters()
        self.w_lr = cfg.w_lr
        self.accumulate, self.grad_clip = cfg.accumulate, cfg.grad_clip
        # one flat buffer for the ~11k weight tensors: clipping, SGD and zeroing are a few
        # calls instead of loops over every tensor, and the cells read their stacked weights
        # from it without copies (fastadl/search/flat_sgd.py)
        self.w_opt = search_weight_optimizer(
            model,
            dist.world_size() > 1,
            lr=cfg.w_lr,
            momentum=cfg.w_momentum,
            weight_decay=cfg.w_weight_decay,
        )
        self.w_scaler = self.precision.make_scaler()
        # a budget's penalty on α and β (fastadl/budget/search_term.py), None without a target
        cost = None if budget is None else (lambda a: budget.penalty(a, model.betas))
        regularizer = arch_regularizer(model.alphas, cfg.arch_entropy_weight,
                                       cfg.alpha_decay_weight, cost)  # fmt: skip
        self.architect = Architect(model, self.arch_params, cfg.arch_lr,
                                   (cfg.arch_beta1, cfg.arch_beta2), cfg.arch_weight_decay,
                                   self.precision, regularizer)  # fmt: skip
        # non-finite losses and gradients, noted on the device by both steps and read by the
        # loop every few steps and before each checkpoint (fastadl/runtime/loop.py)
        self.watch = FiniteWatch()
        self.forward = search_forward(model, cfg)

    def run(self, batch, step: int, lr: float, arch: bool) -> dict:
        """Iteration ``step`` (0-based): the weight step at learning rate ``lr`` on trainA's
        batch, then (``arch``) the α/β step on trainB's; batch = ((xa, ya), (xb, yb)) on the
        device, images (N,3,H,W), masks (N,H,W) (xb, yb unused without ``arch``). Returns
        {"loss": 0-d tensor} and "arch_loss" with ``arch``; non-finite values go to the watch."""
        (xa, ya), (xb, yb) = batch
        set_lr(self.w_opt, lr)
        # weight step on trainA: gradients for w only
        with frozen(self.arch_params):
            loss = weight_step(self.forward, xa, ya, self.w_opt, self.w_scaler, self.precision,
                               stepped_parameters(self.w_opt), step + 1, self.accumulate,
                               self.grad_clip, self.watch)  # fmt: skip
        out = {"loss": loss}
        if arch:  # architecture step on trainB: gradients for α and β only
            out["arch_loss"] = self.architect.step(xb, yb, step + 1, self.accumulate, self.watch)
        return out

    def closure(self, batch, arch: bool = True) -> Callable[[], dict]:
        """A step function for checks and timings: ``run`` on the same ``batch`` at the next
        step, at the schedule's first learning rate, then the watch read (NonFiniteError),
        which the loop does every few steps: here every step, so a timing includes it."""
        steps = itertools.count()

        def step() -> dict:
            out = self.run(batch, next(steps), self.w_lr, arch)
            self.watch.check()
            return out

        return step
