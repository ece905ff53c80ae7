"""``fit``: the SVI loop.

The whole training set sits on the device and is batched by index (no DataLoader,
no host-to-device copy per batch). Each step evaluates the objective's Pyro loss
(Trace_ELBO by default) on ``vae.model``/``vae.guide`` and takes a torch Adam step
on ``vae.parameters()``. Per epoch it records the running objective and the test
ELBO with its standard error (nats per example), appends a line to
``metrics.jsonl`` and writes an atomic checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from . import runs
from .assemble import build_objective, check_data, load_data, resolve_device
from .data import Data
from .errors import RunDirError, SpecError, TrainingDiverged
from .evaluate import elbo_summary
from .spec import Spec, TrainSpec


def as_data(data, spec: Spec) -> Data:
    """Accept a :class:`Data`, a tensor (train only), a (train, test) pair or None (spec.data)."""
    if data is None:
        return load_data(spec)
    if isinstance(data, Data):
        return data
    if isinstance(data, torch.Tensor):
        return Data("tensor", data.float(), data[:0].float())
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return Data("tensor", torch.as_tensor(data[0]).float(), torch.as_tensor(data[1]).float())
    raise TypeError(f"data must be a pyrovae Data, a tensor or a (train, test) pair, got {type(data)}")


def make_optimizer(vae, lr: float) -> torch.optim.Optimizer:
    """Adam over ``vae.parameters()``; the fused kernel (one launch for all tensors)."""
    return torch.optim.Adam(vae.parameters(), lr=lr, fused=True)


def _updated_spec(spec: Spec, train_options: dict) -> Spec:
    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    for k in train_options:
        if k not in fields:
            raise SpecError(f"train.{k}", "unknown training option", value=k, choices=sorted(fields))
    d = spec.to_dict()
    d["train"].update(train_options)
    return Spec.from_dict(d)


def fit(vae, data=None, *, run_dir: str | Path | None = None, resume: bool = False,
        progress: bool = True, callbacks: tuple[Callable[[dict], None], ...] = (),
        **train_options) -> list[dict]:
    """Train ``vae`` with SVI; return the history (one dict per epoch).

    ``train_options`` override ``vae.spec.train`` (epochs, batch_size, lr, seed, device,
    checkpoint_every). With ``run_dir`` the run is saved there (config, checkpoint,
    metrics, figures); ``resume=True`` continues the checkpoint found there.
    """
    vae.spec = _updated_spec(vae.spec, train_options)
    opts = vae.spec.train
    device = resolve_device(opts.device)
    data = as_data(data, vae.spec)
    check_data(vae, data)
    vae.to(device)
    data = data.to(device)
    objective = build_objective(vae)
    optimizer = make_optimizer(vae, opts.lr)

    history: list[dict] = []
    start = saved_epoch = 0
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        if run_dir is None:
            raise RunDirError("resume=True needs run_dir")
        ckpt = runs.read_checkpoint(run_dir)  # CPU: RNG states must stay there
        vae.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # a --set train.lr on resume takes effect
            group["lr"] = opts.lr
        objective.load_state_dict(ckpt.get("objective", {}))
        runs.set_rng_state(ckpt["rng"])
        start, history = ckpt["epoch"], list(ckpt["history"])
        saved_epoch = start
        runs.write_metrics(run_dir, history)  # in step with the checkpoint
    else:
        pyro.set_rng_seed(opts.seed)
        if run_dir is not None:
            runs.write_metrics(run_dir, [])
    if run_dir is not None:
        runs.write_text(run_dir / runs.CONFIG, vae.spec.dump())

    x_train = data.train
    # Labels reach the objective only for models that use them (conditional, semi-supervised);
    # the model decides which it sees (a semi-supervised model hides most of them).
    y_train = vae.training_labels(data) if vae.uses_labels else None
    n = x_train.shape[0]
    steps_per_epoch = -(-n // opts.batch_size)
    is_elbo = objective.is_elbo  # the training objective is exactly the ELBO: report it as such
    bar = tqdm(range(start, opts.epochs), desc="train", unit="epoch", disable=not progress,
               initial=start, total=opts.epochs, dynamic_ncols=True, mininterval=0.5)
    vae.train()
    validated = False
    with vae.unregistered():
        for epoch in bar:
            t0 = time.perf_counter()
            total = torch.zeros((), device=device)
            perm = torch.randperm(n, device=device)
            for step, idx in enumerate(perm.split(opts.batch_size)):
                x, y = data.examples(x_train[idx]), None if y_train is None else y_train[idx]
                objective.set_progress(epoch + step / steps_per_epoch)
                # Pyro's argument and shape validation runs on the first step (it catches a
                # component's shape bugs there); after that it only costs time: the data
                # were checked up front and a NaN loss is caught below.
                with pyro.validation_enabled(not validated):
                    loss = objective.loss(x, y, num_data=n)
                validated = True
                if not torch.isfinite(loss):
                    _diverged(run_dir, epoch + 1, step, loss, saved_epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                objective.after_step(x, y, num_data=n)
                total += loss.detach() * (idx.shape[0] / n)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "unit": "nats per example",
                      "train_objective": -total.item() / n}
            if is_elbo:
                record["train_elbo"] = record["train_objective"]
            record.update(objective.epoch_metrics())
            if data.test.shape[0]:
                ev = elbo_summary(vae, data, split="test", seed=epoch)
                vae.train()
                record.update(test_elbo=ev["elbo"], test_elbo_se=ev["elbo_se"],
                              test_recon=ev["recon"], test_kl=ev["kl"])
                if "accuracy" in ev:  # models with a classifier (semi-supervised)
                    record.update(test_accuracy=ev["accuracy"], test_accuracy_se=ev["accuracy_se"])
            record["seconds"] = seconds
            history.append(record)
            bar.set_postfix_str(_postfix(record), refresh=False)
            last = epoch + 1 == opts.epochs
            if run_dir is not None:
                if (epoch + 1) % opts.checkpoint_every == 0 or last:
                    runs.save_checkpoint(run_dir, vae=vae, optimizer=optimizer, epoch=epoch + 1,
                                         history=history, objective=objective.state_dict())
                    saved_epoch = epoch + 1
                runs.append_metrics(run_dir, record)
            for cb in callbacks:
                cb(record)
    bar.close()
    if run_dir is not None:
        from .plots import write_run_figures
        write_run_figures(run_dir, vae, data, history)
    return history


def _postfix(r: dict) -> str:
    s = f"objective {r['train_objective']:.2f}"
    if "test_elbo" in r:
        s += f" | test ELBO {r['test_elbo']:.2f} ± {r['test_elbo_se']:.2f}"
    return s + " nats/example"


def _diverged(run_dir, epoch, step, loss, saved_epoch):
    where = (f"; the last good checkpoint {str(Path(run_dir) / runs.CHECKPOINT)!r} "
             f"(epoch {saved_epoch}) is intact" if run_dir is not None and saved_epoch else "")
    raise TrainingDiverged(
        f"training stopped: the loss became {loss.item()} at epoch {epoch}, step {step}{where}. "
        f"Try a smaller train.lr, a different model.likelihood scale, or check the data.")

