"""Order fulfillment: a multi-step business process with sagas, idempotency and signals.

Charge the payment, reserve the inventory, create a shipping label, wait for the warehouse to
pick and pack (a signal, possibly hours later, holding no worker), email the customer, and wait
for the carrier's pickup (another signal). Each step that changes the world records what it did
with ``once``, so a retried attempt never charges or reserves twice; each has a ``compensate=``
that undoes it. If a later step fails, the run goes ``compensating``: the label is cancelled,
the inventory released and the payment refunded, in that (reverse) order.

The "services" here append to a ledger file (``$TMPDIR/headwater-example-orders/ledger.jsonl``)
so you can see what happened::

    headwater dags test order_fulfillment --signal warehouse_ready='{}' --signal picked_up='{}'
    # the saga: make the shipping step fail, then watch the compensations run
    headwater dags test order_fulfillment --conf '{"fail_at": "create_shipping_label"}'

In a real deployment a warehouse app sends the signals:
``headwater signals send order_fulfillment RUN_ID warehouse_ready --payload '{"packer": "ann"}'``.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta
from typing import Any

from scheduler import DAG
from scheduler.durable import once
from scheduler.operators import PythonOperator
from scheduler.sensors.signal import SignalSensor

LEDGER_DIR = os.path.join(tempfile.gettempdir(), "headwater-example-orders")


def _ledger(action: str, context: dict[str, Any], **details: Any) -> str:
    """Append what a 'service' did to the ledger; returns an id for it."""
    os.makedirs(LEDGER_DIR, exist_ok=True)
    entry = {"action": action, "order": context["params"]["order_id"],
             "run_id": context["run_id"], **details}
    with open(os.path.join(LEDGER_DIR, "ledger.jsonl"), "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return f"{action}-{context['params']['order_id']}-{context['try_number']}"


def _maybe_fail(step: str, context: dict[str, Any]) -> None:
    if context["params"].get("fail_at") == step:
        raise RuntimeError(f"{step} failed (fail_at={step!r} in the run's conf)")


def charge_payment(**context: Any) -> dict[str, Any]:
    @once("charge")
    def charge() -> str:
        return _ledger("charge", context, amount=context["params"]["amount"])

    charge_id = charge()
    _maybe_fail("charge_payment", context)
    return {"charge_id": charge_id}


def refund_payment(**context: Any) -> None:
    charge = context["ti"].xcom_pull(task_ids="charge_payment")

    @once("refund")
    def refund() -> str:
        return _ledger("refund", context, charge_id=charge["charge_id"])

    refund()


def reserve_inventory(**context: Any) -> dict[str, Any]:
    @once("reserve")
    def reserve() -> str:
        return _ledger("reserve", context, sku=context["params"]["sku"])

    reservation = reserve()
    _maybe_fail("reserve_inventory", context)
    return {"reservation_id": reservation}


def release_inventory(**context: Any) -> None:
    reservation = context["ti"].xcom_pull(task_ids="reserve_inventory")
    once("release")(lambda: _ledger("release", context, **reservation))()


def create_shipping_label(**context: Any) -> dict[str, Any]:
    _maybe_fail("create_shipping_label", context)
    label = once("label")(lambda: _ledger("label", context))()
    return {"label_id": label}


def cancel_shipping_label(**context: Any) -> None:
    label = context["ti"].xcom_pull(task_ids="create_shipping_label")
    once("cancel_label")(lambda: _ledger("cancel_label", context, **label))()


def email_customer(**context: Any) -> None:
    _maybe_fail("email_customer", context)
    packed = context["ti"].xcom_pull(task_ids="wait_for_warehouse")
    once("email")(lambda: _ledger("email", context, packed=packed))()


with DAG(
    dag_id="order_fulfillment",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"order_id": "A-1001", "amount": 4200, "sku": "KAYAK-RED", "fail_at": ""},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
    tags=["example", "saga", "signals"],
    description="Charge, reserve, label, wait for the warehouse, email, wait for pickup",
) as dag:
    charge = PythonOperator(task_id="charge_payment", python_callable=charge_payment,
                            compensate=refund_payment)
    reserve = PythonOperator(task_id="reserve_inventory", python_callable=reserve_inventory,
                             compensate=release_inventory)
    label = PythonOperator(task_id="create_shipping_label",
                           python_callable=create_shipping_label,
                           compensate=cancel_shipping_label, retries=0)
    warehouse = SignalSensor(task_id="wait_for_warehouse", signal_name="warehouse_ready",
                             timeout=timedelta(days=2))
    email = PythonOperator(task_id="email_customer", python_callable=email_customer)
    pickup = SignalSensor(task_id="wait_for_pickup", signal_name="picked_up",
                          timeout=timedelta(days=7))

    charge >> reserve >> label >> warehouse >> email >> pickup
