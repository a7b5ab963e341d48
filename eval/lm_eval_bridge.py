"""Downstream tasks through lm-evaluation-harness (`transplant eval --lm-eval TASKS`).

Every model folder of an evaluation result goes through `lm_eval.simple_evaluate` with the "hf" model
in float32; the numeric metrics of each task land in the model's "lm_eval" entry of the result, under
lm-eval's own names ("acc,none": metric, then filter). TASKS are lm-eval task, group or tag names, or
task YAML files (which run offline when their data is local). lm-eval is optional and imported only
when asked for.
"""

from __future__ import annotations

import difflib
import gc
from dataclasses import dataclass
from pathlib import Path

import torch

from transplant.errors import UserError

INSTALL = "pip install lm-eval"


@dataclass
class Tasks:
    specs: list[str]  # as simple_evaluate takes them: names, and YAML files as absolute paths
    manager: object  # lm_eval.tasks.TaskManager that knows every spec


def prepare_tasks(text: str) -> Tasks:
    """Check lm-eval is installed and every comma-separated task exists, before any model runs."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as error:
        raise UserError(f"--lm-eval needs lm-evaluation-harness, which is not installed: {INSTALL}") from error
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise UserError("--lm-eval needs at least one task name or task YAML file")
    files = {entry: Path(entry).expanduser() for entry in entries if entry.endswith((".yaml", ".yml"))}
    missing = [entry for entry, path in files.items() if not path.is_file()]
    if missing:
        raise UserError(f"lm-eval task file {missing[0]} not found")
    names = [entry for entry in entries if entry not in files]
    # indexing lm-eval's thousands of built-in task files takes seconds: only done when one is named
    manager = TaskManager(include_defaults=bool(names))
    for name in names:
        if name not in manager.all_tasks:
            close = difflib.get_close_matches(name, manager.all_tasks, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"unknown lm-eval task {name!r}{hint} (`lm-eval ls tasks` lists them)")
    return Tasks([str(files[e].resolve()) if e in files else e for e in entries], manager)


def run_tasks(
    tasks: Tasks, folder: str | Path, *, batch_size: int, limit: int | None, device: str
) -> tuple[dict[str, dict[str, float]], set[str]]:
    """({task: {metric: value}} for groups and their subtasks alike, the names that are subtasks)."""
    import lm_eval

    try:
        output = lm_eval.simple_evaluate(
            model="hf",
            # a dict, not "k=v,k=v": a comma or "=" in the folder's path would split the string
            model_args={"pretrained": str(folder), "dtype": "float32"},
            tasks=tasks.specs,
            task_manager=tasks.manager,
            batch_size=batch_size,
            limit=limit,
            device=device,
            log_samples=False,
        )
    except ConnectionError as error:  # what `datasets` raises for task data it cannot download
        raise UserError(f"lm-eval cannot download the data of its tasks (offline?): {error}") from error
    subtasks = {name for names in output["group_subtasks"].values() for name in names}
    return {task: _numeric(metrics) for task, metrics in output["results"].items()}, subtasks


def _numeric(metrics: dict) -> dict[str, float]:
    # besides metrics, lm-eval puts the alias, name and sample count here; an unknown stderr is "N/A"
    return {
        key: value
        for key, value in metrics.items()
        if "," in key and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def add_task_metrics(
    result: dict, tasks: Tasks, *, batch_size: int, limit: int | None = None, device: str | None = None
) -> None:
    """Run the tasks on every model of an `evaluate` result, adding them to it in place."""
    import lm_eval

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    subtasks: set[str] = set()
    for model in result["models"]:
        model["lm_eval"], found = run_tasks(tasks, model["path"], batch_size=batch_size, limit=limit, device=device)
        subtasks |= found
        # the harness keeps reference cycles: collect so two models never sit in memory together
        gc.collect()
    result["lm_eval"] = {
        "tasks": tasks.specs,
        "subtasks": sorted(subtasks),
        "limit": limit,
        "lm_eval_version": lm_eval.__version__,
    }


def format_tasks(result: dict) -> str:
    """Models as rows, (task, metric) as columns: groups and tasks asked for, not a group's subtasks
    (they are in the JSON); standard errors and the filter "none" left out."""
    models = result["models"]
    hidden = set(result["lm_eval"]["subtasks"])
    columns = sorted({(task, key) for m in models for task, values in m["lm_eval"].items() for key in values})
    columns = [(task, key) for task, key in columns if task not in hidden and "_stderr," not in key]
    labels = [(task, key.removesuffix(",none")) for task, key in columns]
    width = [max(len(task), len(metric), 6) + 2 for task, metric in labels]
    name_width = max(len("lm-eval"), *(len(m["name"]) for m in models)) + 2
    lines = [
        f"{'lm-eval':<{name_width}}" + "".join(f"{task:>{w}}" for (task, _), w in zip(labels, width, strict=True)),
        " " * name_width + "".join(f"{metric:>{w}}" for (_, metric), w in zip(labels, width, strict=True)),
    ]
    for model in models:
        cells = [model["lm_eval"].get(task, {}).get(key) for task, key in columns]
        lines.append(
            f"{model['name']:<{name_width}}"
            + "".join(f"{'-' if v is None else f'{v:.3f}':>{w}}" for v, w in zip(cells, width, strict=True))
        )
    limit = result["lm_eval"]["limit"]
    footer = f"lm-eval {result['lm_eval']['lm_eval_version']}"
    lines.append(footer + (f", at most {limit} examples per task" if limit else ""))
    return "\n".join(lines)
