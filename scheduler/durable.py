"""Effectively-once side effects inside at-least-once tasks.

A task instance may run more than once: a retry after a failure, a zombie's task retried after
its worker died. :func:`once` makes one step of it (charging a card, sending an email) happen
at most once per task instance *after it has been recorded*, by keeping the step's result in the
store (table ``idempotency_record``) under a key that is the same in every attempt::

    from scheduler.durable import once

    @task(retries=3)
    def charge(order_id):
        @once("charge")
        def do_charge():
            return payments.charge(order_id, 100)["charge_id"]

        charge_id = do_charge()   # a retried attempt gets the recorded id, charging nothing
        ...

The record is written in its own transaction right after the function returns, so it survives
the attempt failing or its process being killed later. A crash *between* the side effect and
its record can still repeat it: pass the key to the external system too (most payment APIs take
an idempotency key) for an end-to-end guarantee; ``key()`` gives it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy.exc import IntegrityError

from scheduler.context import CurrentTask, current_task
from scheduler.errors import HeadwaterError
from scheduler.store.models import IdempotencyRecord

log = logging.getLogger("headwater.durable")
F = TypeVar("F", bound=Callable[..., Any])


class NotInTask(HeadwaterError):  # noqa: N818 - names the situation, like NotFound
    """``once`` was called outside a running task attempt (it needs the task's store)."""


def _current() -> CurrentTask:
    task = current_task.get()
    if task is None:
        raise NotInTask(
            "scheduler.durable.once works only inside a task run by Headwater (a worker, "
            "`headwater dags test` or `headwater tasks test`); call the function directly "
            "elsewhere")
    return task


def key(name: str, key: str | None = None) -> str:
    """The idempotency key ``once(name, key=key)`` records under in the current task:
    ``f"{key or idempotency_key}:{name}"``. Raises :class:`NotInTask` outside a task."""
    base = key if key is not None else _current().idempotency_key
    return f"{base}:{name}"


def recorded(name: str, key: str | None = None) -> tuple[bool, Any]:
    """``(True, result)`` when ``once(name, key=key)`` has already run in this task instance
    (or, with ``key``, anywhere), else ``(False, None)``."""
    task = _current()
    full = f"{key if key is not None else task.idempotency_key}:{name}"
    with task.write_sessions() as session:
        row = session.get(IdempotencyRecord, full)
        return (True, row.result) if row is not None else (False, None)


def once(name: str, key: str | None = None) -> Callable[[F], F]:
    """Decorate a function so its first call for ``name`` within a task instance runs it and
    records its (JSON-serialisable) result; any later call with the same name, in this or any
    later attempt of the task instance, returns the recorded result without running it.

    The record's key is ``f"{idempotency_key}:{name}"``; ``key=`` replaces the task instance's
    idempotency key by one of your own (e.g. an order id) for a scope wider than one task
    instance. Raises :class:`NotInTask` when called outside a task, ``TypeError`` when the
    result is not JSON-serialisable (the side effect has then happened but is not recorded).
    An exception from the function records nothing: the next call runs it again.
    """
    if not name:
        raise ValueError("once(name) needs a non-empty name that identifies the side effect")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task = _current()
            full = f"{key if key is not None else task.idempotency_key}:{name}"
            with task.write_sessions() as session:
                row = session.get(IdempotencyRecord, full)
                if row is not None:
                    log.info("once(%r): already done (try %s); returning the recorded result",
                             name, row.try_number)
                    return row.result
            result = fn(*args, **kwargs)
            try:
                stored = json.loads(json.dumps(result))
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"once({name!r}): the result of {getattr(fn, '__name__', fn)!r} is not "
                    f"JSON-serialisable ({exc}); return plain data or an identifier") from exc
            try:
                with task.write_sessions() as session:
                    session.add(IdempotencyRecord(
                        key=full, ti_id=task.ti_id, try_number=task.try_number, result=stored,
                        created_at=datetime.now(UTC)))
            except IntegrityError:
                # Somebody recorded it meanwhile (a parallel attempt under a shared key):
                # theirs is the result of record.
                with task.write_sessions() as session:
                    row = session.get(IdempotencyRecord, full)
                    return row.result if row is not None else stored
            return stored

        return cast(F, wrapper)

    return decorate
