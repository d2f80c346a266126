"""The training loop: any task's towers, a contrastive loss, GradCache, processes, resume.

One step is one global batch: embed (in GradCache chunks when set), gather embeddings over
processes, compute the loss parts, backpropagate, average gradients, clip, AdamW, schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import TrainingDivergedError
from ..hub.atomic import write_atomic
from ..hub.env import respect_omp_thread_limit
from .checkpoint import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .data import KeyedDataset, ResumableBatchSampler
from .distributed import (
    DistEnv,
    average_gradients,
    barrier,
    broadcast_state,
    gather_objects,
    init_distributed,
    mean_over_processes,
    min_over_processes,
    shutdown_distributed,
    sum_over_processes,
)
from .gradcache import contrastive_backward
from .logs import MetricLog, truncate_metrics
from .losses import build_loss, total_loss
from .model import FINAL, write_model_card
from .optim import build_optimizer, cosine_schedule, freeze_by_prefix
from .tasks import Task, TowerBatch, build_task

logger = logging.getLogger(__name__)


class TrainModule(nn.Module):
    """Towers and loss in one module: one state dict, one optimizer, one freeze namespace.

    Parameter names are ``towers.<tower>.<...>`` and ``loss.<...>`` (e.g. the learned
    ``loss.log_logit_scale``); ``freeze`` prefixes refer to these names.
    """

    def __init__(self, towers: nn.ModuleDict, loss: nn.Module):
        super().__init__()
        self.towers = towers
        self.loss = loss

    def post_step(self) -> None:
        """Run the loss's post-step hook (e.g. clamping a learned temperature)."""
        hook = getattr(self.loss, "post_step", None)
        if hook is not None:
            hook()


@dataclass
class Position:
    """Where the data loader is: the epoch and how many of its batches were consumed."""

    epoch: int = 0
    batch: int = 0


@dataclass
class TrainSummary:
    """What a finished run reports."""

    steps: int  # the step the run ended at
    first_loss: float | None  # loss at the first step this run took (None if it took none)
    last_loss: float | None  # loss at the last step
    skipped_samples: int  # unreadable samples skipped in collate, all processes
    output_dir: Path
    evaluation: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # eval.json


def pick_device(name: str, env: DistEnv) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", env.local_rank) if name == "cuda" else torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains a task's towers with the config's loss, optimizer and schedule.

    Args:
        config: the run's typed config.
        task: the recipe task (default: built from ``config.task``).
        env: this process's place among processes (default: a single process).
    """

    def __init__(self, config: TrainConfig, task: Task | None = None, env: DistEnv | None = None):
        config.validate()
        respect_omp_thread_limit()
        self.config, self.env = config, env or DistEnv()
        self.device = pick_device(config.device, self.env)
        seed_everything(config.seed)  # identical initial weights on every process
        self.task = task or build_task(config)
        self.module = TrainModule(self.task.build_towers(), build_loss(config.loss)).to(self.device)
        self.task.on_step(0, self.module.towers)  # before the optimizer sees the parameters
        if config.gradient_checkpointing:
            self.task.enable_gradient_checkpointing(self.module.towers)
        freeze_by_prefix(self.module, config.freeze)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.module, config.optim)
        self.scheduler = cosine_schedule(
            self.optimizer, config.optim.warmup_steps, config.steps, config.optim.min_lr_ratio
        )
        self.dataset = self.task.build_dataset()
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.step, self.position, self.skipped_samples = 0, Position(), 0
        seed_everything(config.seed + 1 + self.env.rank)  # different dropout on each process

    # ------------------------------------------------------------------ loop

    def fit(self, resume: bool = False) -> TrainSummary:
        """Train until ``config.steps``; with ``resume``, continue from the latest checkpoint."""
        started = time.perf_counter()
        self._prepare_output(resume)
        broadcast_state(self.module, self.env)
        if self.step == 0:
            self._evaluate("before")
        log = MetricLog(self.output_dir, self.config.tensorboard) if self.env.is_main else None
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            unit="step",
            disable=not (self.env.is_main and self.config.progress_bar),
        )
        losses: list[float] = []
        try:
            while self.step < self.config.steps:
                losses += self._run_epoch(log, bar)
        finally:
            bar.close()
            if log is not None:
                log.close()
        if self.step % self.config.save_every:
            self._save()
        evaluation = self._evaluate("after")
        first, last = (losses[0], losses[-1]) if losses else (None, None)
        summary = TrainSummary(
            self.step, first, last, self.skipped_samples, self.output_dir, evaluation
        )
        self._save_final(summary, time.perf_counter() - started)
        return summary

    def _run_epoch(self, log: MetricLog | None, bar: tqdm) -> list[float]:
        """Train on the rest of the current epoch (or until the last step); return the losses."""
        loader = self._loader()
        losses: list[float] = []
        last_time = time.perf_counter()
        for batch in loader:
            self.position.batch += 1
            values = self._train_step(batch)
            if values is None:
                continue
            now = time.perf_counter()
            values["samples_per_s"] = values.pop("global_batch") / max(now - last_time, 1e-9)
            last_time = now
            losses.append(values["loss"])
            self._after_step(values, log, bar)
            if self.step >= self.config.steps:
                return losses
        if len(loader) and not losses:
            raise RuntimeError(f"epoch {self.position.epoch}: no batch had a usable sample")
        self.position = Position(self.position.epoch + 1, 0)
        return losses

    def _train_step(self, batch: TowerBatch) -> dict[str, Any] | None:
        """One optimizer step on one global batch; None when a process has no usable rows."""
        batch = batch.to(self.device)
        size, skipped = sum_over_processes([batch.size, batch.skipped], self.env, self.device)
        self.skipped_samples += skipped
        if min_over_processes(batch.size, self.env, self.device) == 0:
            logger.warning(
                "step %d: a process has no readable sample; skipping the batch", self.step + 1
            )
            return None
        self._begin_step(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        parts = contrastive_backward(
            self.module.towers,
            self.task.sides,
            batch.inputs,
            self._loss_parts,
            self.config.chunk_size,
            self._autocast,
        )
        average_gradients(self.params, self.env)
        values: dict[str, Any] = {"loss": float(total_loss(parts))}
        values.update({name: float(value) for name, value in parts.items()})
        if self.config.optim.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.max_grad_norm)
            values["grad_norm"] = float(norm)
        self._check_finite(values)
        values["lr"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.module.post_step()
        self.step += 1
        values = mean_over_processes(values, self.env, self.device)
        values.update(
            epoch=self.position.epoch, skipped_samples=self.skipped_samples, global_batch=size
        )
        return values

    def _check_finite(self, values: dict[str, Any]) -> None:
        """Stop before a non-finite loss or gradient reaches the weights (and every later
        checkpoint); the error names the step, the parts at fault and any non-finite weight."""
        bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
        if "grad_norm" not in values:  # no clipping: one fused norm, as clipping would take
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
            if not math.isfinite(norm):
                bad["grad_norm"] = norm
        if not bad:
            return
        grads = [n for n, p in self.module.named_parameters() if _non_finite(p.grad)]
        weights = [n for n, p in self.module.named_parameters() if _non_finite(p)]
        checkpoint = latest_checkpoint(self.checkpoint_dir)
        raise TrainingDivergedError(
            f"step {self.step + 1} diverged: {bad}"
            f"; non-finite gradients: {_few(grads)}; non-finite weights: {_few(weights)}"
            f"; last checkpoint: {checkpoint or 'none'} (lower optim.lr or set "
            "optim.max_grad_norm, then --resume)"
        )

    def _loss_parts(self, embeddings: dict[str, Tensor]) -> dict[str, Tensor]:
        """The task's loss parts (by default: gather every side, apply the loss)."""
        return self.task.loss_parts(self.module.loss, embeddings, self.env)

    def _begin_step(self, step: int) -> None:
        """Let the task adapt its towers to ``step``; move the optimizer to replaced parameters."""
        before = dict(self.module.named_parameters())
        self.task.on_step(step, self.module.towers)
        after = dict(self.module.named_parameters())
        if before.keys() != after.keys():
            raise RuntimeError("Task.on_step may replace parameters but not add or remove them")
        replaced = {
            name: (before[name], new) for name, new in after.items() if new is not before[name]
        }
        if not replaced:
            return
        swap = {id(old): new for old, new in replaced.values()}
        for old, new in replaced.values():
            new.requires_grad_(old.requires_grad)
            self.optimizer.state.pop(old, None)  # moments of the old shape no longer apply
        for group in self.optimizer.param_groups:
            group["params"] = [swap.get(id(p), p) for p in group["params"]]
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        logger.info(
            "step %d: the task replaced %s (optimizer moments restart)", step, sorted(replaced)
        )

    def _evaluate(self, when: str) -> dict[str, dict[str, float]]:
        """Run the task's evaluation on the main process; record it in ``eval.json``.

        Returns every evaluation recorded so far (``before`` and/or ``after``), or {}.
        """
        path = self.output_dir / "eval.json"
        recorded: dict[str, dict[str, float]] = {}
        if self.env.is_main:
            training = self.module.training
            self.module.eval()
            with torch.no_grad():
                metrics = self.task.evaluate(self.module.towers)
            self.module.train(training)
            if metrics:
                if path.is_file():
                    recorded = json.loads(path.read_text(encoding="utf-8"))
                recorded[when] = {"step": self.step, **metrics}
                text = json.dumps(recorded, indent=2)
                write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
                logger.info("evaluation %s training (step %d): %s", when, self.step, metrics)
        barrier(self.env)
        return recorded

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )

    def _after_step(self, values: dict[str, Any], log: MetricLog | None, bar: tqdm) -> None:
        if log is not None and self.step % self.config.log_every == 0:
            log.log(self.step, values)
        bar.update(1)
        bar.set_postfix(
            loss=f"{values['loss']:.4f}", samples_per_s=f"{values['samples_per_s']:.1f}"
        )
        if self.step % self.config.save_every == 0:
            self._save()

    def _loader(self) -> torch.utils.data.DataLoader:
        """This epoch's loader, from the current position; its RNG never touches the global one."""
        sampler = ResumableBatchSampler(
            len(self.dataset),
            self.config.batch_size,
            seed=self.config.seed,
            epoch=self.position.epoch,
            start_batch=self.position.batch,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        workers = self.config.data.num_workers
        return torch.utils.data.DataLoader(
            KeyedDataset(self.dataset),
            batch_sampler=sampler,
            collate_fn=self.task.collate,
            num_workers=workers,
            generator=torch.Generator().manual_seed(self.config.seed + self.position.epoch),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    # ----------------------------------------------------------- checkpoints

    def _prepare_output(self, resume: bool) -> None:
        """Refuse to mix two runs in one folder; on resume, load the latest checkpoint.

        A new run writes its resolved config to ``output_dir/config.yaml``, the file that
        ``mmembed train ... --resume`` continues it from.
        """
        metrics = self.output_dir / "metrics.jsonl"
        if not resume:
            if metrics.exists() or latest_checkpoint(self.checkpoint_dir) is not None:
                raise FileExistsError(
                    f"{self.output_dir} already holds a run; pass --resume or use a new output_dir"
                )
            if self.env.is_main:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                text = yaml.safe_dump(dataclasses.asdict(self.config), sort_keys=False)
                (self.output_dir / "config.yaml").write_text(text, encoding="utf-8")
            return
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            logger.warning("no checkpoint in %s; starting from scratch", self.checkpoint_dir)
        else:
            self._load(path)
        if self.env.is_main:
            truncate_metrics(metrics, self.step)
        barrier(self.env)

    def _save(self) -> None:
        """Write a checkpoint (main process) with every process's RNG states."""
        rng = gather_objects(capture_rng(self.device), self.env, self.device)
        if self.env.is_main:
            payload = {
                "step": self.step,
                "position": dataclasses.asdict(self.position),
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                "skipped_samples": self.skipped_samples,
                "config": dataclasses.asdict(self.config),
            }
            save_checkpoint(payload, checkpoint_path(self.checkpoint_dir, self.step))
            prune_checkpoints(self.checkpoint_dir, self.config.keep_checkpoints)
        barrier(self.env)

    def _load(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self._begin_step(max(payload["step"] - 1, 0))  # the shapes the checkpoint was saved with
        self.module.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step = payload["step"]
        self.position = Position(**payload["position"])
        self.skipped_samples = payload["skipped_samples"]
        rng = payload["rng"]
        if len(rng) == self.env.world_size:
            restore_rng(rng[self.env.rank], self.device)
        else:
            logger.warning(
                "checkpoint has RNG states for %d processes, this run has %d: dropout will differ",
                len(rng),
                self.env.world_size,
            )
        logger.info(
            "resuming at step %d (epoch %d, batch %d)",
            self.step,
            self.position.epoch,
            self.position.batch,
        )

    def _save_final(self, summary: TrainSummary, wall_s: float) -> None:
        """``output_dir/final``: the trained embedder in ``Embedder.save``'s format + a card."""
        if self.env.is_main:
            self.module.eval()
            embedder = self.task.final_model(self.module.towers)
            final = self.output_dir / FINAL
            embedder.cfg.name = str(final)
            embedder.to("cpu").save(final)
            card = {
                "recipe": self.config.task,
                "init": self.task.init,
                "data": f"{self.config.data.format}: {self.config.data.path}",
                "samples": len(self.dataset),
                "steps": summary.steps,
                "batch_size": self.config.batch_size,
                "first_loss": summary.first_loss,
                "last_loss": summary.last_loss,
                "wall_s": wall_s,
                "device": str(self.device),
                "evaluation": summary.evaluation,
                "config": dataclasses.asdict(self.config),
            }
            write_model_card(final, card)
            logger.info("saved the trained model to %s", final)
        barrier(self.env)


def train(config: TrainConfig, resume: bool = False) -> TrainSummary:
    """Run a config in this process, joining torchrun's process group when there is one."""
    use_cuda = config.device in ("auto", "cuda") and torch.cuda.is_available()
    env = init_distributed(use_cuda)
    try:
        return Trainer(config, env=env).fit(resume=resume)
    finally:
        shutdown_distributed(env)


def _non_finite(tensor: Tensor | None) -> bool:
    return tensor is not None and not bool(torch.isfinite(tensor).all())


def _few(names: list[str], shown: int = 4) -> str:
    """Up to ``shown`` names and how many more, or 'none'."""
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
