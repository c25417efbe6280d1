"""TaskFlow: plain Python functions whose return values flow to the tasks that take them.

``fetch_prices`` returns a dict; ``convert`` receives it as its argument; ``report`` receives
both the converted prices and the rate. Headwater stores each return value as an XCom and wires
the dependencies from the function calls.
"""

from __future__ import annotations

from datetime import datetime

from scheduler import dag, task


@dag(
    schedule="0 6 * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "taskflow"],
)
def taskflow_pipeline():
    @task
    def fetch_prices() -> dict[str, float]:
        return {"apples": 1.20, "pears": 0.95, "plums": 2.10}

    @task
    def fetch_rate() -> float:
        return 0.92

    @task
    def convert(prices: dict[str, float], rate: float) -> dict[str, float]:
        return {name: round(price * rate, 2) for name, price in prices.items()}

    @task
    def report(converted: dict[str, float]) -> str:
        lines = [f"{name}: {price:.2f} EUR" for name, price in sorted(converted.items())]
        print("\n".join(lines))
        return f"{len(lines)} prices converted"

    report(convert(fetch_prices(), fetch_rate()))


taskflow_pipeline()
