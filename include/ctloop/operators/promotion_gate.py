"""The promotion gate as an Airflow operator: rules from the pipeline YAML, verdicts to XCom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from ctloop.gates import unknown_gate_metrics
from ctloop.spec import Gates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from ctloop.metrics import TaskKind


class PromotionGateOperator(BaseOperator):
    """Evaluate the candidate against its gates and the champion; return the decision.

    The decision (every rule, its value, bound and verdict) is logged to the MLflow run and
    returned, so it lands in XCom before any downstream task branches on it. The operator does
    not raise on rejection: a rejected candidate is an outcome, recorded and visible.

    :param gates: the spec's ``gates`` section.
    :param task_kind: ``classification`` or ``regression``; decides which metrics exist.
    :param evaluation: the evaluate task's result (templated, usually an XComArg).
    """

    template_fields = ("evaluation",)
    ui_color = "#f0e4ff"

    def __init__(self, *, gates: Gates, task_kind: TaskKind, evaluation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        problems = unknown_gate_metrics(gates, task_kind)
        if problems:
            raise ValueError("; ".join(problems))
        self.gates = gates
        self.task_kind = task_kind
        self.evaluation = evaluation

    def execute(self, context: Context) -> dict:
        from ctloop.settings import load_settings
        from ctloop.train_steps import gate

        decision = gate(self.gates, self.task_kind, load_settings(), self.evaluation)
        for rule in decision["rules"]:
            verdict = {True: "pass", False: "FAIL", None: "skipped"}[rule["passed"]]
            self.log.info("gate rule %s %s: %s (%s)", rule["metric"], rule["kind"], verdict, rule["note"])
        self.log.info("%s", decision["summary"])
        return decision
