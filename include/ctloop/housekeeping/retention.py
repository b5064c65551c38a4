"""Retention: which of a pipeline's stored data and model versions its spec lets go, and letting go.

Every area (``spec.retention``) holds items: a snapshot, a holdout, a batch's prediction or labeled
partition, a run's folder of reports, a monitor history entry or label-join record, a set-aside
batch or label file with its reason, a closed retrain request, a registered model version, what a
fanned-out batch claim staged and no publish dropped. A rule
selects the items that are older than its age and beyond its newest N (either limit keeps an
item); a selected item is still kept, and reported with the reason, when anything that must stay
readable needs it:

- what a registered model version's tags or its MLflow run's tags name (snapshot, holdouts,
  suite, the reports that started its training, its retrain request) or a training run still
  under way names, what any promotion-ledger entry's evidence names, what an open or running
  retrain request names;
- model versions that hold an alias (champion, challenger), appear in the ledger (every champion
  ever, from or to), or wait for their gate;
- the prediction partitions of the monitor's window and of batches still waiting for their first
  label (``retention.label_wait_days``); the labeled partitions the monitor's window, the recent
  holdout and a ``batches`` training window read, and those holding rows the champion or its
  predecessor served (the champion watch compares them);
- the monitor history the k-of-n rule counts (the current champion's entries and the last n), and
  the reports a kept history entry links to;
- the retrain requests the cooldown and the circuit breaker read;
- the staging of a batch claim still open (reserved, neither committed nor released: a fan-out can
  take hours).

An item's age is from its last write: the file's mtime, S3's ``LastModified``, a version's
creation time. Model versions go first, so the data only a deleted version named can go in the same run. A
deleted version is removed from the registry; its MLflow run, with its model and records, stays.
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ctloop import clock
from ctloop.io.locks import pipeline_lock
from ctloop.io.storage import home_storage
from ctloop.monitoring import retrain_requests
from ctloop.registry import ledger, tags
from ctloop.registry import mlflow_store as registry
from ctloop.scoring import scored_batches
from ctloop.scoring.late_labels import JOINS, QUARANTINE
from ctloop.scoring.prediction_log import LABELED, PREDICTIONS, SERVED, read_partitions
from ctloop.training.attempts import PENDING

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ctloop.io.storage import Storage
    from ctloop.settings import Settings
    from ctloop.spec.models import PipelineSpec, RetentionRule

log = logging.getLogger(__name__)

SET_ASIDE = ("quarantine", "conflicts", "duplicates", QUARANTINE)  # ctloop.scoring's move_aside areas


class Deleted(BaseModel):
    """One item a rule deleted (or, in a dry run, would delete): its keys and the rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    area: str
    item: str
    keys: list[str]
    rule: str


class Kept(BaseModel):
    """One item a rule selected and kept, because something still needs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    area: str
    item: str
    why: str


class RetentionResult(BaseModel):
    """What one housekeeping run deleted and kept; nothing was deleted when ``dry_run``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str
    dry_run: bool
    at: str
    deleted: list[Deleted]
    kept: list[Kept]


@dataclass(frozen=True)
class _Item:
    """A unit of retention: its name, its storage keys, when it was last written, and the strings
    whose presence in a record means the record references it."""

    name: str
    keys: tuple[str, ...]
    at: datetime
    needles: tuple[str, ...]


def selected(rule: RetentionRule, items: list[_Item], now: datetime) -> dict[str, str]:
    """The items ``rule`` lets go, by name, each with the rule's words: older than its age AND
    beyond its newest N (an unset limit does not keep)."""
    if not rule.active:
        return {}
    newest_first = sorted(items, key=lambda i: (i.at, i.name), reverse=True)
    words = [
        *([f"older than {rule.max_age_days:g} days"] if rule.max_age_days is not None else []),
        *([f"beyond the newest {rule.keep_last}"] if rule.keep_last is not None else []),
    ]
    return {
        item.name: " and ".join(words)
        for index, item in enumerate(newest_first)
        if (rule.max_age_days is None or now - item.at > timedelta(days=rule.max_age_days))
        and (rule.keep_last is None or index >= rule.keep_last)
    }


def _objects(storage: Storage, folder: str) -> dict[str, datetime]:
    """Every object below ``folder/`` (not a sibling's that starts alike) with when it was last written."""
    return {key: at for key, at in storage.list_modified(folder).items() if key.startswith(f"{folder}/")}


def _files(storage: Storage, folder: str) -> list[_Item]:
    """One item per object below ``folder`` (a content-addressed one is also named by its digest)."""
    return [
        _Item(key, (key,), at, (key, PurePosixPath(key).stem))
        for key, at in _objects(storage, folder).items()
    ]


def _folders(storage: Storage, folder: str, depth: int, keep: Callable[[str], bool] = bool) -> list[_Item]:
    """One item per folder ``depth`` levels below ``folder`` whose name passes ``keep``: every object
    in it, written last when the newest was."""
    groups: dict[str, dict[str, datetime]] = {}
    cut = len(folder.split("/")) + depth
    for key, at in _objects(storage, folder).items():
        parts = key.split("/")
        if len(parts) > cut and keep("/".join(parts[:cut])):
            groups.setdefault("/".join(parts[:cut]), {})[key] = at
    return [_Item(n, tuple(sorted(f)), max(f.values()), (f"{n}/",)) for n, f in groups.items()]


def _batch(item: _Item) -> str:
    return item.name.rsplit("batch_id=", 1)[-1]


@dataclass
class _Registry:
    """The registered versions of the pipeline and what decides whether one may go."""

    client: MlflowClient
    versions: list[ModelVersion]
    champion: str | None
    challenger: str | None
    previous: str | None
    in_ledger: set[str]
    ledger_text: str

    @classmethod
    def read(cls, spec: PipelineSpec, settings: Settings) -> _Registry:
        client = registry.client(settings)
        versions, token = [], None
        while True:  # every page: a registry may hold more versions than one page
            page = client.search_model_versions(f"name = '{spec.name}'", page_token=token)
            versions += list(page)
            token = page.token
            if not token:
                break
        champion = registry.get_champion(client, spec.name)
        challenger = registry.get_alias(client, spec.name, registry.CHALLENGER)
        moves = ledger.entries(settings, spec.name, every_state=True)
        return cls(
            client=client,
            versions=versions,
            champion=str(champion.version) if champion else None,
            challenger=str(challenger.version) if challenger else None,
            previous=champion.tags.get(tags.PREVIOUS_CHAMPION) if champion else None,
            in_ledger={v for m in moves for v in (m.from_version, m.to_version) if v},
            ledger_text="\n".join(m.model_dump_json() for m in moves),
        )

    def needed(self, version: ModelVersion) -> str | None:
        number = str(version.version)
        if number == self.champion:
            return "the champion"
        if number == self.challenger or version.aliases:
            return "holds an alias"
        if number in self.in_ledger:
            return "in the promotion ledger"
        if version.tags.get(tags.GATE) == PENDING:
            return "waits for its gate"
        return None

    def item(self, version: ModelVersion) -> _Item:
        at = datetime.fromtimestamp(int(version.creation_timestamp) / 1000, UTC)
        return _Item(f"v{version.version}", (f"models:/{version.name}/{version.version}",), at, ())

    def records(self, pipeline: str, kept: list[ModelVersion]) -> str:
        """The tags of the versions kept, of their MLflow runs and of the runs still under way (a
        training that reuses an old snapshot names it before it registers a version), as one text."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(pipeline)
        running = (
            self.client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
            if experiment
            else []
        )
        found = [json.dumps(r.data.tags) for r in running]
        for version in kept:
            found.append(json.dumps(version.tags))
            if version.run_id:
                try:
                    found.append(json.dumps(self.client.get_run(version.run_id).data.tags))
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
        return "\n".join(found)


class _Run:
    """One retention run's bookkeeping: it decides, deletes (unless dry) and records."""

    def __init__(self, spec: PipelineSpec, storage: Storage, dry_run: bool, now: datetime) -> None:
        self.spec, self.storage, self.dry_run, self.now = spec, storage, dry_run, now
        self.deleted: list[Deleted] = []
        self.kept: list[Kept] = []
        self.references: dict[str, str] = {}  # who references, as one text per kind of record

    def referenced_by(self, item: _Item) -> str | None:
        who = [kind for kind, text in self.references.items() if any(n in text for n in item.needles)]
        return f"referenced by {' and '.join(who)}" if who else None

    def apply(
        self,
        area: str,
        items: list[_Item],
        needed: Callable[[_Item], str | None] = lambda _: None,
        delete: Callable[[_Item], None] | None = None,
        hold: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> list[_Item]:
        """Delete the items the area's rule selects and nothing needs, each judged and deleted while
        ``hold()`` is held; returns the items left."""
        chosen = selected(getattr(self.spec.retention, area), items, self.now)
        left = [item for item in items if item.name not in chosen]
        for item in items:
            if item.name in chosen:
                with hold():
                    if not self._let_go(area, item, chosen[item.name], needed, delete or self._delete_keys):
                        left.append(item)
        return left

    def _let_go(
        self,
        area: str,
        item: _Item,
        rule: str,
        needed: Callable[[_Item], str | None],
        delete: Callable[[_Item], None],
    ) -> bool:
        """Delete ``item`` (unless dry) when nothing needs it, else record why it stays; whether it went."""
        why = needed(item) or self.referenced_by(item)
        if why is not None:
            self.kept.append(Kept(area=area, item=item.name, why=why))
            log.info("%s: kept %s %s: %s", self.spec.name, area, item.name, why)
            return False
        verb = "would delete" if self.dry_run else "deleting"
        for key in item.keys:
            log.info("%s: %s %s (%s: %s)", self.spec.name, verb, key, area, rule)
        if not self.dry_run:
            delete(item)
        self.deleted.append(Deleted(area=area, item=item.name, keys=list(item.keys), rule=rule))
        return True

    def _delete_keys(self, item: _Item) -> None:
        for key in item.keys:
            self.storage.delete(key)


def apply_retention(
    spec: PipelineSpec, settings: Settings, *, dry_run: bool | None = None, now: datetime | None = None
) -> RetentionResult:
    """Apply ``spec.retention`` to the pipeline's storage and registered versions; ``dry_run``
    (default: the spec's) lists what would go and deletes nothing."""
    storage = home_storage(settings)
    run = _Run(spec, storage, spec.retention.dry_run if dry_run is None else dry_run, now or clock.now())
    name = spec.name

    found = _Registry.read(spec, settings)
    by_item = {found.item(v).name: v for v in found.versions}
    left = run.apply(
        "model_versions",
        [found.item(v) for v in found.versions],
        lambda item: found.needed(by_item[item.name]),
        lambda item: found.client.delete_model_version(name, str(by_item[item.name].version)),
    )
    requests = retrain_requests.all_requests(storage, name)
    run.references = {
        "a model version or an MLflow run": found.records(name, [by_item[i.name] for i in left]),
        "the promotion ledger": found.ledger_text,
        "an open retrain request": "\n".join(
            json.dumps(r) for r in requests if r["state"] != retrain_requests.CLOSED
        ),
    }

    for area in ("snapshots", "holdouts"):
        run.apply(area, _files(storage, f"{area}/{name}"))
    _requests(run, requests)
    _prediction_log(run, settings, found)
    history = _history(run, found.champion)
    run.references["a monitor history entry"] = "\n".join(
        json.dumps(entry) for key, entry in history.items() if key not in {d.item for d in run.deleted}
    )
    run.apply("reports", _folders(storage, "runs", 2, lambda f: f.split("/")[1].rsplit("__", 1)[0] == name))
    run.apply("set_aside", [item for area in SET_ASIDE for item in _folders(storage, f"{area}/{name}", 1)])
    _staging(run, settings)
    log.info(
        "%s: %s %d item(s); kept %d the rules selected",
        name,
        "would delete" if run.dry_run else "deleted",
        len(run.deleted),
        len(run.kept),
    )
    return RetentionResult(
        pipeline=name, dry_run=run.dry_run, at=run.now.isoformat(), deleted=run.deleted, kept=run.kept
    )


def _requests(run: _Run, requests: list[dict[str, Any]]) -> None:
    """Closed requests only; the cooldown reads the last one a monitor asked for, the circuit
    breaker every one closed since the last promotion."""
    folder = f"retrain/{run.spec.name}/requests"
    closed = sorted(
        (r for r in requests if r["state"] == retrain_requests.CLOSED), key=lambda r: str(r["closed_at"])
    )
    promoted = [i for i, r in enumerate(closed) if r["outcome"] == retrain_requests.PROMOTED]
    breaker = {r["id"] for r in closed[(promoted[-1] if promoted else 0) :]}
    cooldown = [r["id"] for r in closed if retrain_requests.asked_by_monitor(r)][-1:]
    state = {r["id"]: r["state"] for r in requests}

    def needed(item: _Item) -> str | None:
        request = PurePosixPath(item.name).stem
        if state.get(request) != retrain_requests.CLOSED:
            return f"the request is {state.get(request, 'unreadable')}"
        if request in cooldown:
            return "the retrain cooldown starts at it"
        if request in breaker:
            return "the circuit breaker counts it"
        return None

    run.apply("retrain_requests", _files(run.storage, folder), needed)


def _staging(run: _Run, settings: Settings) -> None:
    """What fanned-out batch claims staged (parts, plan copies) and no publish dropped, one item per
    claimed content, ``staging/<pipeline>/<batch id>/<sha256 prefix>/``. Each is judged and deleted
    under the lock :func:`ctloop.scoring.scored_batches.reserve` takes, so no claim of its content
    opens between the two."""
    name = run.spec.name

    def claimed(item: _Item) -> str | None:
        batch_id, sha = item.name.split("/")[2:]
        record = scored_batches.batch_record(run.storage, name, batch_id) or {}
        if not str(record.get("sha256", "")).startswith(sha):
            return None  # another content's claim, or none: this content's claim was released
        if record.get("state") == scored_batches.RESERVED:
            return "its batch's claim is open (reserved, neither committed nor released)"
        return None

    def locked() -> AbstractContextManager[object]:
        return pipeline_lock(settings, name, "scored")

    run.apply("staging", _folders(run.storage, f"staging/{name}", 2), claimed, hold=locked)


def _prediction_log(run: _Run, settings: Settings, found: _Registry) -> None:
    spec, name = run.spec, run.spec.name
    labeled = _folders(run.storage, f"{LABELED}/{name}", 1)
    labeled_ids = sorted(_batch(i) for i in labeled)
    predictions = _folders(run.storage, f"{PREDICTIONS}/{name}", 1)
    window = set(sorted(_batch(i) for i in predictions)[-spec.monitoring.window_batches :])
    waiting = timedelta(days=spec.retention.label_wait_days)

    def prediction_needed(item: _Item) -> str | None:
        if _batch(item) in window:
            return "in the monitor's window"
        if _batch(item) not in labeled_ids and run.now - item.at < waiting:
            return "its labels may still arrive"
        return None

    run.apply("predictions", predictions, prediction_needed)
    training = spec.retrain.data.last if spec.retrain.data.window == "batches" else None
    latest = max(
        spec.monitoring.window_batches,
        spec.gates.recent_holdout.batches,
        training or 0,
        *spec.retrain.selection.last_batches,
    )
    read = set(labeled_ids[-latest:])
    watched = {v for v in (found.champion, found.previous) if v and v != "none"}

    def labeled_needed(item: _Item) -> str | None:
        if _batch(item) in read:
            return "read by the monitor's window, the recent holdout or the training window"
        served = read_partitions(LABELED, name, [_batch(item)], settings, [SERVED.version])
        if watched & set(served[SERVED.version].astype(str)):
            return "the champion watch reads it"
        return None

    run.apply("labeled", labeled, labeled_needed)


def _history(run: _Run, champion: str | None) -> dict[str, dict[str, Any]]:
    """Monitor history entries (the k-of-n rule counts the current champion's and the last n) and
    label-join records; returns the monitor entries by key, as read before deleting."""
    from ctloop.monitoring.monitor_run import history_prefix

    name = run.spec.name
    monitor = _files(run.storage, history_prefix(name))
    entries = {item.name: json.loads(run.storage.read_bytes(item.name)) for item in monitor}
    last = {item.name for item in sorted(monitor, key=lambda i: i.name)[-run.spec.retrain.k_of_n.n :]}

    def needed(item: _Item) -> str | None:
        if item.name in last:
            return "k-of-n reads the last n entries"
        if champion is not None and str(entries.get(item.name, {}).get("champion_version")) == champion:
            return "k-of-n counts the current champion's"
        return None

    run.apply("history", [*monitor, *_files(run.storage, f"{JOINS}/{name}")], needed)
    return entries
