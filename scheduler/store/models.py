"""The store's tables. Plain mappings: no behaviour lives here (see commands.py, queries.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones, so values are stored as naive UTC there; PostgreSQL keeps
    ``timestamptz``. Naive values given to the store are refused: they are a bug upstream.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text, so SQLite and PostgreSQL store byte-identical documents."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    pass


class DagModel(Base):
    """One row per DAG id ever seen: its switches and where its schedule stands."""

    __tablename__ = "dag"

    dag_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    fileloc: Mapped[str] = mapped_column(String(2000))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    latest_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    schedule: Mapped[str] = mapped_column(String(200), default="None")
    timezone: Mapped[str] = mapped_column(String(100), default="UTC")
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(JSONText, nullable=True)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=16)
    max_active_tasks: Mapped[int] = mapped_column(Integer, default=16)
    # The next run the schedule owes, kept up to date by the loop (None: nothing owed).
    next_logical_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_data_interval_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_data_interval_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_run_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_parsed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DagVersion(Base):
    """A DAG's serialized structure and its file's source, under a content hash."""

    __tablename__ = "dag_version"
    __table_args__ = (UniqueConstraint("dag_id", "version", name="uq_dag_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250), index=True)
    version: Mapped[str] = mapped_column(String(32))
    serialized: Mapped[dict[str, Any]] = mapped_column(JSONText)
    source: Mapped[str] = mapped_column(Text)
    fileloc: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DagFile(Base):
    """What the parser last saw of one file, so unchanged files are skipped."""

    __tablename__ = "dag_file"

    fileloc: Mapped[str] = mapped_column(String(2000), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    mtime: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(Integer)
    dag_ids: Mapped[list[str]] = mapped_column(JSONText)
    last_parsed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    parse_duration: Mapped[float] = mapped_column(Float, default=0.0)


class ImportErrorRecord(Base):
    """The last import error of a DAG file (one row per broken file)."""

    __tablename__ = "import_error"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fileloc: Mapped[str] = mapped_column(String(2000), unique=True)
    lineno: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", name="uq_dag_run_run_id"),
        Index("ix_dag_run_state", "state"),
        Index("ix_dag_run_dag_logical", "dag_id", "logical_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    run_type: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(50))
    logical_date: Mapped[datetime] = mapped_column(UTCDateTime)
    data_interval_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    data_interval_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    conf: Mapped[dict[str, Any]] = mapped_column(JSONText, default=dict)
    version_id: Mapped[int] = mapped_column(ForeignKey("dag_version.id"))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A backfill (or other job) that drives this run itself; schedulers leave it alone while
    # that job is alive.
    claimed_by_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TaskInstance(Base):
    __tablename__ = "task_instance"
    __table_args__ = (
        UniqueConstraint("run_pk", "task_id", "map_index", name="uq_task_instance"),
        Index("ix_task_instance_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("dag_run.id", ondelete="CASCADE"), index=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    state: Mapped[str] = mapped_column(String(50))
    try_number: Mapped[int] = mapped_column(Integer, default=0)
    max_tries: Mapped[int] = mapped_column(Integer, default=0)
    operator: Mapped[str] = mapped_column(String(100))
    pool: Mapped[str] = mapped_column(String(250), default="default_pool")
    pool_slots: Mapped[int] = mapped_column(Integer, default=1)
    priority_weight: Mapped[int] = mapped_column(Integer, default=1)
    queue: Mapped[str] = mapped_column(String(250), default="default")
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(250), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Token handed to the executor with the workload; only its holder may start the attempt.
    claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queued_by_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A deferred task instance waits for this signal (SignalSensor) until defer_timeout_at.
    defer_signal: Mapped[str | None] = mapped_column(String(250), nullable=True)
    defer_timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # On that timeout: skipped (soft_fail) rather than failed.
    defer_soft_fail: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class TaskAttempt(Base):
    """One try of a task instance: when it ran, where, how it ended, and its log."""

    __tablename__ = "task_attempt"
    __table_args__ = (UniqueConstraint("ti_id", "try_number", name="uq_task_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ti_id: Mapped[int] = mapped_column(ForeignKey("task_instance.id", ondelete="CASCADE"))
    try_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(50))
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(250), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class XCom(Base):
    __tablename__ = "xcom"
    __table_args__ = (UniqueConstraint("ti_id", "key", name="uq_xcom"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ti_id: Mapped[int] = mapped_column(ForeignKey("task_instance.id", ondelete="CASCADE"))
    run_pk: Mapped[int] = mapped_column(Integer, index=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    key: Mapped[str] = mapped_column(String(512))
    value: Mapped[Any] = mapped_column(JSONText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """The append-only history: one row per state change of a run or a task instance."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_run", "run_pk", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    when: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(20))  # "run" | "task"
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    run_pk: Mapped[int] = mapped_column(Integer)
    ti_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    map_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    try_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_state: Mapped[str | None] = mapped_column(String(50), nullable=True)
    to_state: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(250))


class Job(Base):
    """A scheduler, backfill or worker process, with a heartbeat so others can tell it died."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    hostname: Mapped[str] = mapped_column(String(250))
    pid: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))  # running | stopped
    start_date: Mapped[datetime] = mapped_column(UTCDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    latest_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime)


class Pool(Base):
    __tablename__ = "pool"

    name: Mapped[str] = mapped_column(String(250), primary_key=True)
    slots: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class Variable(Base):
    __tablename__ = "variable"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    val: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class Connection(Base):
    __tablename__ = "connection"

    conn_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    conn_type: Mapped[str] = mapped_column(String(100))
    host: Mapped[str | None] = mapped_column(String(500), nullable=True)
    schema: Mapped[str | None] = mapped_column(String(500), nullable=True)
    login: Mapped[str | None] = mapped_column(String(500), nullable=True)
    password: Mapped[str | None] = mapped_column(String(5000), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONText, nullable=True)


class Signal(Base):
    """A named signal sent to a run (human approval, a webhook): delivered to the run's task
    waiting for that name, or kept until one waits."""

    __tablename__ = "signal"
    __table_args__ = (Index("ix_signal_run_name", "run_pk", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("dag_run.id", ondelete="CASCADE"))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    name: Mapped[str] = mapped_column(String(250))
    payload: Mapped[Any] = mapped_column(JSONText, nullable=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_by: Mapped[str] = mapped_column(String(250))
    consumed_by_ti_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyRecord(Base):
    """A side effect that happened (``scheduler.durable.once``), with its result."""

    __tablename__ = "idempotency_record"

    key: Mapped[str] = mapped_column(String(1000), primary_key=True)
    ti_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    try_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[Any] = mapped_column(JSONText, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    """A person who logs in to the web UI (or owns API tokens)."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(250), unique=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))  # admin | operator | viewer
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A token scripts use for the REST API; only its hash is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(250))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditLog(Base):
    """Who did what from the UI, the API or the CLI (pause, trigger, clear, mark, signal...)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_when", "when"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    when: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(250))
    action: Mapped[str] = mapped_column(String(100))
    dag_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    detail: Mapped[Any] = mapped_column(JSONText, nullable=True)
