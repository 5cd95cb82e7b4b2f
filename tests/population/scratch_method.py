"""A population method registered by a test alone, to show what a new method costs: this module
and one registry entry (`test_registry.py`). At every epoch end every model becomes the mean."""

from typing import Any

from reidgraft.population.averaging import average_into_
from reidgraft.population.participant import Participant


class EveryoneAverages(Participant):
    name = "scratch_average"
    record_key = "averaged"

    def __init__(self, models: list):
        self.models, self.calls = models, []

    def exchanges_after(self, completed: int) -> bool:
        return True

    def exchange(self, completed: int) -> list[int]:
        self.calls.append(completed)
        average_into_(self.models)
        return list(range(len(self.models)))

    def describe(self, record: dict[str, Any]) -> str:
        return f"averaged after epoch {record['epoch']}"


def build(models: list, config: Any, group: Any) -> EveryoneAverages:
    return EveryoneAverages(models)
