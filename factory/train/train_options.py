"""What a request's training options become for the transformers Trainer: checkpoint and evaluation cadence,
early stopping, the loss watchdog, and the trackers it reports to."""

from __future__ import annotations

import importlib.util
import os

from factory.request.config import Request


def loss_watchdog(request: Request):
    """Stop a run whose logged training loss stays above loss_watchdog_threshold for loss_watchdog_patience logs."""
    from transformers import TrainerCallback

    from factory.base.errors import UserError

    class LossWatchdog(TrainerCallback):
        def __init__(self):
            self.high = 0

        def on_log(self, args, state, control, logs=None, **kw):
            loss = (logs or {}).get("loss")
            if loss is None:
                return
            self.high = self.high + 1 if loss > request.loss_watchdog_threshold else 0
            if self.high >= request.loss_watchdog_patience:
                raise UserError(f"loss watchdog: the training loss was above {request.loss_watchdog_threshold:g} for "
                                f"{self.high} logged steps in a row (last {loss:.4f} at step {state.global_step}); "
                                "the run was stopped. Lower learning_rate, or raise loss_watchdog_threshold")

    return LossWatchdog()


def lisa(request: Request, model, reporter):
    """LISA (Layerwise Importance Sampled AdamW): every lisa_step_interval steps, lisa_n_layers decoder layers chosen
    at random train and the other layers are frozen. The choice is seeded by the step, so a resumed run makes the
    same choices. Frozen parameters get no gradient, and AdamW leaves a parameter without one untouched."""
    from functools import reduce

    import torch
    from transformers import TrainerCallback

    from factory.base.errors import UserError
    from factory.base.progress import Event

    try:
        layers = reduce(getattr, request.lisa_layers_attribute.split("."), getattr(model, "module", model))
    except AttributeError:
        raise UserError(f"lisa_layers_attribute '{request.lisa_layers_attribute}' is not an attribute of this model "
                        "(Llama-style models keep their layers in model.layers)") from None
    if request.lisa_n_layers > len(layers):
        raise UserError(f"lisa_n_layers {request.lisa_n_layers} is more than the model's {len(layers)} layers")

    class Lisa(TrainerCallback):
        def switch(self, step: int) -> None:
            g = torch.Generator().manual_seed(request.seed * 1_000_003 + step)
            active = sorted(torch.randperm(len(layers), generator=g)[: request.lisa_n_layers].tolist())
            for i, layer in enumerate(layers):
                for p in layer.parameters():
                    p.requires_grad = i in active
            reporter.emit(Event("train", f"LISA: layers {active} of {len(layers)} train from step {step}"))

        def on_train_begin(self, args, state, control, **kw):
            self.switch(state.global_step - state.global_step % request.lisa_step_interval)

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step % request.lisa_step_interval == 0 and state.global_step > 0:
                self.switch(state.global_step)

    return Lisa()


def optim_args(value: str | dict | None) -> str | None:
    """Axolotl's optim_args (a mapping or the Trainer's key=value string) as the Trainer's string."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def schedule_args(request: Request, steps_per_epoch: int, has_eval: bool) -> dict:
    """Checkpoint and evaluation cadence, and early stopping, as TrainingArguments."""
    save_steps = request.save_steps or max(1, steps_per_epoch // (request.saves_per_epoch or 1))
    out = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": request.save_total_limit}
    every = request.eval_steps or (max(1, steps_per_epoch // request.evals_per_epoch) if request.evals_per_epoch else None)
    if has_eval and (every or request.early_stopping_patience):
        every = every or save_steps
        out.update(eval_strategy="steps", eval_steps=every)
        if request.early_stopping_patience or request.load_best_model_at_end:  # the best checkpoint is loaded at the end
            metric, greater = request.best_metric
            out.update(save_steps=every, load_best_model_at_end=True, metric_for_best_model=metric,
                       greater_is_better=greater)
    return out


def wandb_can_log(request: Request) -> bool:
    """An online W&B run needs the operator's API key (WANDB_API_KEY or `wandb login`); offline runs do not."""
    import netrc

    if (request.wandb_mode or os.environ.get("WANDB_MODE")) in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def mlflow_folder_store(request: Request) -> bool:
    """MLflow 3 refuses a folder (file) store unless MLFLOW_ALLOW_FILE_STORE is set: the run would fail at its first log."""
    uri = request.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    folder = uri.startswith("file:") or (bool(uri) and "://" not in uri and uri != "databricks")
    if not folder or os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
        return False
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return int(version(dist).split(".")[0]) >= 3
        except (PackageNotFoundError, ValueError):
            continue
    return False


def trackers(request: Request) -> dict[str, str | None]:
    """Each tracker the request names, and why it cannot report here (None: it will)."""
    wanted = {"wandb": bool(request.wandb_project), "trackio": request.use_trackio or bool(request.trackio_project_name),
              "mlflow": bool(request.mlflow_tracking_uri or request.mlflow_experiment_name),
              "tensorboard": request.use_tensorboard}
    out = {}
    for name, on in wanted.items():
        if not on:
            continue
        if importlib.util.find_spec(name) is None:
            out[name] = "not installed here (pip install 'model-factory[tracking]' has wandb, trackio and mlflow)"
        elif name == "wandb" and not wandb_can_log(request):
            out[name] = "no W&B API key here (WANDB_API_KEY or `wandb login`); wandb_mode: offline logs locally"
        elif name == "mlflow" and mlflow_folder_store(request):
            out[name] = ("MLflow 3 keeps runs in a database or a server, not a folder: give mlflow_tracking_uri: "
                         "sqlite:///PATH/mlflow.db or http(s)://HOST")
        else:
            out[name] = None
    return out


def report_to(request: Request) -> list[str]:
    """The trackers the request names that can report from here (the Trainer reports to them)."""
    return [name for name, why_not in trackers(request).items() if why_not is None]


def tracker_args(request: Request) -> dict[str, str]:
    """The TrainingArguments the Trainer's tracker callbacks read: trackio's project and Space, and the
    run's name (trackio and MLflow name their run from run_name, not from an environment variable)."""
    pairs = {"project": request.trackio_project_name, "trackio_space_id": request.trackio_space_id,
             "run_name": request.trackio_run_name or request.mlflow_run_name}
    return {k: v for k, v in pairs.items() if v}


def tracker_env(request: Request) -> dict[str, str]:
    """The environment the Trainer's tracker integrations read (set for the run, not the process's lifetime)."""
    pairs = {"WANDB_PROJECT": request.wandb_project, "WANDB_ENTITY": request.wandb_entity,
             "WANDB_NAME": request.wandb_name, "WANDB_RUN_ID": request.wandb_run_id, "WANDB_MODE": request.wandb_mode,
             "WANDB_WATCH": request.wandb_watch, "WANDB_LOG_MODEL": request.wandb_log_model,
             "TRACKIO_PROJECT": request.trackio_project_name, "TRACKIO_SPACE_ID": request.trackio_space_id,
             "MLFLOW_TRACKING_URI": request.mlflow_tracking_uri, "MLFLOW_EXPERIMENT_NAME": request.mlflow_experiment_name}
    return {k: v for k, v in pairs.items() if v}


class environ:
    """Set environment variables for a block, then restore them."""

    def __init__(self, values: dict[str, str]):
        self.values, self.saved = values, {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def with_loraplus(trainer_cls, request: Request):
    """The Trainer with LoRA+'s optimizer (peft's create_loraplus_optimizer): the adapter's B matrices learn
    loraplus_lr_ratio times faster than its A matrices, the optimizer otherwise the request's."""

    class LoraPlus(trainer_cls):
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                from peft.optimizers import create_loraplus_optimizer

                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
                lr = kwargs.pop("lr", self.args.learning_rate)
                self.optimizer = create_loraplus_optimizer(
                    self.model, optimizer_cls, lr=lr, loraplus_lr_ratio=request.loraplus_lr_ratio,
                    loraplus_lr_embedding=request.loraplus_lr_embedding or 1e-6,
                    weight_decay=self.args.weight_decay, **kwargs)
            return self.optimizer

    return LoraPlus


def trainer_class(base, request: Request):
    """The Trainer class a request trains with: `base` (the transformers Trainer or the preference trainer) with
    the request's own learning-rate schedule (factory.train.schedules) and LoRA+'s optimizer where it asks."""
    from factory.train import schedules

    if schedules.custom(request):
        base = schedules.with_schedule(base, request)
    if request.loraplus_lr_ratio:
        base = with_loraplus(base, request)
    return base
