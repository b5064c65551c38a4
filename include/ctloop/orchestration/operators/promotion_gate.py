"""The promotion gate as an Airflow operator: rules from the pipeline YAML, verdicts to XCom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from ctloop.spec.models import PipelineSpec

VERDICT_WORDS = {True: "pass", False: "FAIL", None: "skipped"}


class PromotionGateOperator(BaseOperator):
    """Judge the registered candidate by every rule of its gates; return the decision.

    Threshold rules and slices use both models' scores on the shared frozen holdout; relative
    rules and the paired bootstrap use the recent holdout (the newest labeled production rows)
    on alert-triggered runs when there is one (``gates.recent_holdout``), else the frozen one;
    validity and latency load the registered version as a user would. The decision (every rule
    with its value, bound and verdict) is logged to the MLflow run and the version and returned,
    so it lands in XCom before any downstream task acts on it. The operator does not raise on
    rejection: a rejected candidate is an outcome, recorded and visible.

    :param spec: the pipeline spec; its ``gates`` section holds the rules.
    :param evaluation: the evaluate task's result (templated, usually an XComArg).
    :param version: the registered candidate's version (templated, usually an XComArg).
    """

    template_fields = ("evaluation", "version")
    ui_color = "#f0e4ff"

    def __init__(self, *, spec: PipelineSpec, evaluation: Any, version: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec  # validated when it was loaded: PipelineSpec names a rule's unknown metric
        self.evaluation = evaluation
        self.version = version

    def execute(self, context: Context) -> dict:
        from ctloop.orchestration.run_context import fail_without_retry
        from ctloop.orchestration.task_wrapper import task_run, to_xcom
        from ctloop.training.steps import gate

        with fail_without_retry():
            run = task_run(self.spec, context)  # the trigger form may ask for a dry run
            decision = gate(run.spec, run.settings, self.evaluation, str(self.version))
        for rule in decision.rules:
            verdict = VERDICT_WORDS[rule.passed]
            self.log.info("gate rule %s %s: %s (%s)", rule.metric, rule.kind, verdict, rule.note)
        self.log.info("%s", decision.summary)
        return to_xcom(decision)
