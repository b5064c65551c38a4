"""Airflow's ``ApprovalOperator``, keeping the reviewer's answer in XCom whatever it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

RESPONSE_KEY = "response"


class RecordedApprovalOperator(ApprovalOperator):
    """On Reject (or a timeout answered by the default, Reject) the base class skips downstream
    by raising, so its return value never reaches XCom. The ledger, the version's tags and the
    model card need who answered what and why in every case, so the answer is pushed first."""

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            responded_at = event.get("responded_at")
            isoformat = getattr(responded_at, "isoformat", None)
            answer = {
                "chosen_options": event.get("chosen_options"),
                "params_input": event.get("params_input") or {},
                "responded_at": isoformat() if callable(isoformat) else responded_at,
                "responded_by_user": event.get("responded_by_user"),
                "timedout": bool(event.get("timedout")),
            }
            context["ti"].xcom_push(key=RESPONSE_KEY, value=answer)
        return super().execute_complete(context, event)
