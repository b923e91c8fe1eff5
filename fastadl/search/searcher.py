"""The Auto-DeepLab search loop (docs/METHOD.md §3), readable top to bottom.

One iteration: an SGD step on the weights w with a trainA batch, then (from
``arch_start_epoch`` on) an Adam step on α and β with a trainB batch. Validation mIoU, the
decoded genotype and plots follow every epoch. Steps, checkpoints, resume, signals and the
progress bar are the shared loop's (loop.py).

    python -m fastadl.search                                  # tiny preset, synthetic data
    torchrun --nproc_per_node=2 -m fastadl.search --preset tiny --out runs/ddp
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from tqdm import tqdm

from fastadl.budget.search_term import search_budget
from fastadl.data import subset
from fastadl.data.split import load_split, make_split, save_split
from fastadl.nn import SuperNet
from fastadl.nn.search.compile import compile_stats
from fastadl.runtime import distributed as dist
from fastadl.runtime.loading import SeededItems, batches_per_epoch, build_datasets, epoch_loader
from fastadl.runtime.loop import LoopResult, load_state_dicts, run_loop, state_dicts
from fastadl.runtime.rundir.checkpoint import load_module_state
from fastadl.runtime.validation import evaluate_miou, validation_scores
from fastadl.search.arch_stats import (
    alpha_summary,
    beta_summary,
    op_histogram,
    skip_count,
)
from fastadl.search.architect import SearchIteration
from fastadl.search.config import ConfigError, SearchConfig
from fastadl.search.diagrams import save_diagrams
from fastadl.search.perturbation import select_inputs, select_ops
from fastadl.search.plots import save_plots
from fastadl.space.genotype import Genotype, decode_cell, viterbi
from fastadl.space.path_prior import prior_corrected

# Below these a search is said to be too short at its start (the tiny preset: 150 and 100).
MIN_SEARCH_STEPS, MIN_ARCH_STEPS = 100, 50


def cosine_lr(step: int, total: int, lr_max: float, lr_min: float) -> float:
    """Cosine decay lr_max → lr_min over ``total`` steps: a pure function of the step."""
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * min(step, total) / total))


class Search:
    """The search as a loop task (loop.LoopTask): data halves, SuperNet, both optimizers."""

    record_kind = "step"

    def __init__(self, cfg: SearchConfig, run_dir: Path, device: torch.device, resume: bool):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        torch.manual_seed(cfg.seed)  # same initial weights, α and β on every rank

        # --- data: two disjoint halves of the training set, fixed by seed and saved with the run
        train_set, self.val_set = build_datasets(cfg)
        split_path = run_dir / "split.json"
        if resume and split_path.is_file():
            self.split = load_split(split_path, train_set.ids)
        else:
            self.split = make_split(train_set.ids, cfg.seed)
            if dist.is_main_process():
                run_dir.mkdir(parents=True, exist_ok=True)
                save_split(split_path, self.split)
        self.items_a = SeededItems(subset(train_set, self.split["trainA"]), cfg.seed)
        self.items_b = SeededItems(subset(train_set, self.split["trainB"]), cfg.seed + 1)
        self.steps_per_epoch = min(
            batches_per_epoch(len(self.items_a), cfg.batch_size),
            batches_per_epoch(len(self.items_b), cfg.batch_size),
        )
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"trainA/trainB hold {len(self.items_a)}/{len(self.items_b)} images: too few for "
                f"batch_size {cfg.batch_size} on {dist.world_size()} process(es)"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs

        # --- model and optimizers
        self.model = SuperNet(
            train_set.num_classes,
            layers=cfg.layers,
            filter_multiplier=cfg.filter_multiplier,
            block_multiplier=cfg.block_multiplier,
            backend=cfg.backend,
            recompute=cfg.recompute,
        ).to(device)
        # a cost budget (None without a target): its tables built once, here
        val_size = lambda: tuple(self.val_set[0][0].shape[-2:])  # noqa: E731
        self.budget = search_budget(cfg, train_set.num_classes, val_size)
        if self.budget and cfg.cost_estimate == "decoded":
            self.budget.decoder = self.decode
        # precision, TF32, FlatSGD and its scaler, the Architect, the watch and the forward:
        # built where the self-check and the benchmark build theirs (architect.py)
        self.iteration = it = SearchIteration(self.model, cfg, device, self.budget)
        self.precision, self.w_opt, self.w_scaler = it.precision, it.w_opt, it.w_scaler
        self.architect, self.watch = it.architect, it.watch  # the loop reads the watch
        # Collapse guard arch_stop_skips: the epoch after which α/β were frozen (0 = not).
        self.arch_frozen_at = 0
        self.drawn: Genotype | None = None  # the genotype plots/genotype_*.png show
        self.compiled_graphs = compile_stats()[0]  # dynamo's count before the first step

    def schedule_warning(self) -> str | None:
        """Fewer than MIN_SEARCH_STEPS weight steps or MIN_ARCH_STEPS α/β steps (the tiny preset
        takes 150 and 100; the issue's 12 left the supernet at the all-background prediction)."""
        cfg, spe = self.cfg, self.steps_per_epoch
        arch_steps = spe * max(0, cfg.epochs - cfg.arch_start_epoch)
        if self.total_steps >= MIN_SEARCH_STEPS and arch_steps >= MIN_ARCH_STEPS:
            return None
        need = max(
            math.ceil(MIN_SEARCH_STEPS / spe),
            cfg.arch_start_epoch + math.ceil(MIN_ARCH_STEPS / spe),
        )
        return (
            f"short schedule: {spe} steps per epoch (trainA/trainB hold {len(self.items_a)}/"
            f"{len(self.items_b)} images, batch size {cfg.batch_size} per process) × {cfg.epochs} "
            f"epochs = {self.total_steps} weight steps and {arch_steps} α/β steps (from "
            f"epoch {cfg.arch_start_epoch + 1}); a search this short usually ends predicting "
            f"background everywhere, with α and β near uniform. For at least "
            f"{MIN_SEARCH_STEPS} and {MIN_ARCH_STEPS}: --epochs {need} (or a smaller "
            f"--batch-size, a lower --arch-start-epoch, more training images)"
        )

    def batches(self, epoch: int, start: int):
        self.model.train()
        pin, cfg = self.device.type == "cuda", self.cfg
        loader_a = epoch_loader(self.items_a, cfg.batch_size, epoch, start, cfg.workers, pin)
        loader_b = epoch_loader(self.items_b, cfg.batch_size, epoch, start, cfg.workers, pin)
        # read by train_step in this epoch
        self.search_arch = epoch >= cfg.first_arch_epoch and not self.arch_frozen_at
        return zip(loader_a, loader_b, strict=False)

    def train_step(self, batch, step: int) -> dict:
        (xa, ya), (xb, yb) = batch
        cfg = self.cfg
        xa, ya = xa.to(self.device, non_blocking=True), ya.to(self.device, non_blocking=True)
        if self.search_arch:  # trainB's batch is needed only by the α/β step
            xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        lr = cosine_lr(step, self.total_steps, cfg.w_lr, cfg.w_lr_min)
        steps = self.iteration.run(((xa, ya), (xb, yb)), step, lr, self.search_arch)
        fields = {"loss": steps.pop("loss"), "lr": lr, **steps}
        if cfg.compile:
            fields.update(self.compile_report(step + 1))
        return {**fields, "images": xa.shape[0]}

    def compile_report(self, step: int) -> dict:
        """After a step that compiled new graphs: a "compile: N graphs, X s" line and the
        metrics fields compile_graphs / compile_s (totals so far in this process: compile time
        is not in the step's images_per_s alone). Nothing after other steps."""
        graphs, seconds = compile_stats()
        if graphs == self.compiled_graphs:
            return {}
        self.compiled_graphs, seconds = graphs, round(seconds, 2)
        if dist.is_main_process():
            tqdm.write(f"compile: {graphs} graphs, {seconds:.1f} s (by step {step})")
        return {"compile_graphs": graphs, "compile_s": seconds}

    def decode(self, genotype: Genotype | None = None) -> Genotype:
        """``genotype`` (default: the model's current one) with the max_skips cap when it is
        on and the path decoded as path_decoding says."""
        genotype = genotype or self.model.genotype()
        if self.cfg.path_decoding == "prior-corrected":
            path = viterbi(prior_corrected(self.model.normalized_betas()))
            genotype = dataclasses.replace(genotype, path=path)
        if self.cfg.max_skips < 0:
            return genotype
        cell = decode_cell(self.model.alphas, self.model.primitives, self.cfg.max_skips)
        return dataclasses.replace(genotype, cell=cell)

    def validate(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.model
        # val_bn "batch": every cell evaluation normalises with its own path's batch statistics
        # (as in the training and architecture steps) instead of one running average that the
        # 2-3 paths into a node share (config.py's paper preset says which one and why).
        batch_stats = cfg.val_bn == "batch"
        miou, acc = validation_scores(
            model, self.val_set, cfg, self.device, self.precision, batch_stats
        )
        raw = model.genotype()  # before any max_skips cap
        self.genotype = self.decode(raw)
        # How far the architecture has moved (README, plots/alpha_history.png).
        with torch.no_grad():
            arch = {**alpha_summary(model.alphas), **beta_summary(model.normalized_betas())}
        raw_skips = skip_count(raw.cell)
        ops = op_histogram(self.genotype.cell, model.alphas, model.primitives)
        arch.update(skip_count=raw_skips, op_shares=ops)
        # Collapse guard arch_stop_skips (DARTS+' early stop): once α has been trained and the
        # cell it decodes to holds that many skips, α and β stay where they are for the rest
        # of the search (**decision**: the weights keep training to the end of the schedule, so
        # the run, its checkpoints and resume stay those of a normal search).
        stop = cfg.arch_stop_skips and epoch > cfg.first_arch_epoch and not self.arch_frozen_at
        if stop and raw_skips >= cfg.arch_stop_skips:
            self.arch_frozen_at = epoch
        if self.arch_frozen_at:
            arch["arch_frozen_at"] = self.arch_frozen_at
        if cfg.op_selection == "perturbation" and epoch == cfg.epochs:
            self.genotype = dataclasses.replace(self.genotype, cell=self.perturbation_cell())
            arch["op_selection"] = "perturbation"
        record = {"val_miou": miou, "val_pixel_acc": acc, "genotype": self.genotype.to_dict()}
        if self.budget:
            arch.update(self.budget.record(model.alphas, model.betas, self.genotype))
        return {**record, **arch}

    def perturbation_cell(self) -> tuple[tuple[str, int], ...]:
        """The cell chosen by perturbation (op_selection; fastadl/search/perturbation.py), scored
        on the first perturbation_images trainB images, whole and unaugmented. Leaves α on the
        chosen cell and the weights fine-tuned (the final checkpoint holds both)."""
        cfg, model = self.cfg, self.model
        plain, _ = build_datasets(cfg, augment=False)
        images = subset(plain, self.split["trainB"][: cfg.perturbation_images])
        batch_size = cfg.val_batch_size or cfg.batch_size

        def evaluate() -> float:
            return evaluate_miou(model, images, batch_size, 0, self.device, self.precision,
                                 batch_stats=True)[0]  # fmt: skip

        def batches():
            epoch = cfg.epochs
            while True:  # epochs past the schedule: fresh batches, α/β left alone
                yield from self.batches(epoch, 0)
                epoch += 1

        stream = batches()

        def finetune() -> None:
            for _ in range(cfg.perturbation_steps):
                batch = next(stream)
                self.search_arch = False
                self.train_step(batch, self.total_steps - 1)  # at the schedule's last rate

        chosen = select_ops(model.alphas, model.primitives, evaluate, finetune, cfg.seed)
        return select_inputs(model.alphas, model.primitives, chosen, evaluate)

    def report(self, epoch: int, record: dict, metrics_path: Path) -> str:
        if self.budget:  # with the decoded genotype's predicted cost
            self.budget.save_genotype(self.genotype, self.run_dir / "genotype.json")
        else:
            self.genotype.save(self.run_dir / "genotype.json")
        save_plots(self.run_dir, self.model, self.genotype.path, metrics_path)
        if self.genotype != self.drawn:  # the diagrams change only with the genotype
            save_diagrams(self.genotype, self.run_dir / "plots")
            self.drawn = self.genotype
        selected = (
            f"; cell by perturbation: {skip_count(self.genotype.cell)} skips"
            if record.get("op_selection") == "perturbation"
            else ""
        )
        frozen_note = (
            f", α/β frozen after epoch {self.arch_frozen_at}" if self.arch_frozen_at else ""
        )
        return (
            f"path {list(self.genotype.path)}, max softmax(α) {record['alpha_max_mean']:.3f}, "
            f"α/β entropy {record['alpha_entropy']:.3f}/{record['beta_entropy']:.3f}, "
            f"{record['skip_count']} skips{frozen_note}{selected}"
            + (self.budget.progress(record) if self.budget else "")
        )

    def optimizer_states(self) -> dict:
        return {"w_opt": self.w_opt, "w_scaler": self.w_scaler, "architect": self.architect}

    def state_dict(self) -> dict:
        model = self.model.state_dict()
        optimizers = state_dicts(**self.optimizer_states())
        return {
            "model": model,
            **optimizers,
            "split": self.split,
            "arch_frozen_at": self.arch_frozen_at,
        }

    def load_state_dict(self, state: dict) -> None:
        load_module_state(self.model, state["model"], "model")
        load_state_dicts(state, **self.optimizer_states())
        self.arch_frozen_at = int(state.get("arch_frozen_at", 0))  # absent before the guard


def run_search(
    cfg: SearchConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> LoopResult:
    """Run (or continue) a search into ``run_dir``; returns where it stopped.

    resume: continue from the run directory's latest checkpoint (from the start when it has
    none yet). Raises Preempted (after a checkpoint) on SIGTERM / SIGINT.
    """
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.resolve_device(cfg.device)
    check_cuda_graphs(cfg, device)
    device = dist.init_distributed(device)
    task = Search(cfg, run_dir, device, resume)
    return run_loop(task, cfg, run_dir, resume=resume, progress=progress)


def check_cuda_graphs(cfg: SearchConfig, device: torch.device) -> None:
    """A ConfigError (one line, naming the flag) for --cuda-graphs: off CUDA there is nothing
    to capture; on CUDA the capture of the steps is not written yet (issue 26)."""
    if not cfg.cuda_graphs:
        return
    if device.type != "cuda":
        raise ConfigError(
            f"--cuda-graphs needs a CUDA device, and --device {cfg.device} is {device.type} "
            "here; leave --cuda-graphs off"
        )
    raise ConfigError(
        "--cuda-graphs: capturing the search steps as CUDA graphs is not implemented yet; "
        "run without it"
    )
