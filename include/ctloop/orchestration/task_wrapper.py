"""The preamble every ctloop task repeats, written once: the spec with this run's Params applied,
the settings, the run's context, errors of bad data or a bad spec failing the task without retries,
and a returned pydantic model turned into the JSON XCom holds. What a task needs is imported when
it runs: every DAG file parse imports this module, and pays for nothing else from it.

A task function takes a :class:`TaskRun` first; the DAG wiring sees only the arguments after it:

    @task(task_id="validate")
    @ctloop_task(spec)
    def validate(run: TaskRun, started: dict) -> Validated:
        from ctloop.training import steps

        return steps.validate(run.spec, run.settings, run.ctx, started)
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context

    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec
    from ctloop.training.steps import RunContext

P = ParamSpec("P")


@dataclass(frozen=True)
class TaskRun:
    """What a ctloop task works with: the spec for this run, the settings and Airflow's context."""

    spec: PipelineSpec
    settings: Settings
    context: Context

    @functools.cached_property
    def ctx(self) -> RunContext:
        """The run's identity and reason, built on first use: it lives beside the training steps,
        whose imports a scoring task does not need."""
        from ctloop.orchestration.run_context import run_context

        return run_context(self.context)


def task_run(spec: PipelineSpec, context: Context, *, run_params: bool = True) -> TaskRun:
    """The :class:`TaskRun` of a task (or an operator's ``execute``) in ``context``.

    With ``run_params`` the trigger form's choices (training data window, gate mode) apply to the
    spec, as they do for every step of a training run; without, the committed YAML does.
    """
    # Importing the notifier installs the Airflow sender the steps notify through: here, when a
    # task runs, rather than in every parse of every DAG file.
    import ctloop.orchestration.notifier  # noqa: F401
    from ctloop.orchestration.run_context import spec_for_run
    from ctloop.settings import load_settings

    return TaskRun(spec_for_run(spec, context["params"]) if run_params else spec, load_settings(), context)


def to_xcom(result: Any) -> Any:
    """A step's result as XCom holds it: a pydantic model becomes its JSON, anything else stays."""
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


def ctloop_task(
    spec: PipelineSpec, *, run_params: bool = True
) -> Callable[[Callable[Concatenate[TaskRun, P], Any]], Callable[..., Any]]:
    """Decorate a task function taking a :class:`TaskRun` first; put it under ``@task``.

    Only the signature is touched at parse time; the settings and the context are read when the
    task runs. ``run_params=False`` keeps the YAML's spec (a task that closes a run however it
    was started, even with a bad trigger form). The result takes any arguments as far as a type
    checker knows: the DAG wiring passes XComArgs where the function receives their values.
    """

    def decorate(function: Callable[Concatenate[TaskRun, P], Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def run_task(*args: P.args, **kwargs: P.kwargs) -> Any:
            from airflow.sdk import get_current_context

            from ctloop.orchestration.run_context import fail_without_retry

            context = get_current_context()
            with fail_without_retry():
                return to_xcom(function(task_run(spec, context, run_params=run_params), *args, **kwargs))

        # Airflow binds upstream results to the signature: show it without the TaskRun.
        signature = inspect.signature(function)
        run_task.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=list(signature.parameters.values())[1:]
        )
        return run_task

    return decorate
