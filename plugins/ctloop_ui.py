"""Registers ctloop's Airflow UI plugin; the code lives in include/ctloop/ui (see plugins/README.md)."""

from __future__ import annotations

from ctloop.ui.plugin import CtloopUiPlugin

__all__ = ["CtloopUiPlugin"]
