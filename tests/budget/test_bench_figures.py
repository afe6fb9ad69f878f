"""The budget benchmark's figures (bench/budget.py) from the server's counts."""

from __future__ import annotations

from bench.budget import SIM_START, utilization

HOUR = 3600


def test_a_partial_last_hour_counts_only_the_part_that_was_run() -> None:
    """1.2 simulated hours: the second hour ran 12 minutes, so its quota is a fifth."""
    first = int(SIM_START // HOUR)
    spent = {first: 5998, first + 1: 1151}
    figure = utilization(spent, quota=6000, start=SIM_START, hours=1.2)
    assert figure == round((5998 + 1151) / (6000 + 1200), 4)
    assert utilization({first: 6000}, quota=6000, start=SIM_START, hours=1.0) == 1.0
    assert utilization({}, quota=6000, start=SIM_START, hours=1.0) == 0.0
