"""The baseline-ratio rule the counting detectors share (bot.surges.BaselineRatio), over any thresholds.
How each family fills it in is tested with the family (test_report_surge, test_signup_surge)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.surges import DAY, HOUR, MIN_BASELINE_SPAN, BaselineRatio

RULES = st.builds(
    BaselineRatio,
    window=st.floats(60, 7 * DAY),
    baseline=st.floats(HOUR, 90 * DAY),
    ratio=st.floats(1, 100),
    min_count=st.integers(1, 200),
    learning=st.none() | st.floats(0, 3 * DAY),
)
COUNTS = st.integers(0, 1_000_000)
BASELINES = st.integers(-1, 1_000_000)  # -1: a record script's "not counted"
OBSERVED = st.floats(0, 120 * DAY) | st.just(math.inf)
SETTINGS = settings(max_examples=500, deadline=None, database=None)


@SETTINGS
@given(rule=RULES, count=COUNTS, baseline=BASELINES, observed=OBSERVED)
def test_never_a_surge_below_the_minimum(rule: BaselineRatio, count: int, baseline: int, observed: float) -> None:
    if count < rule.min_count:
        assert not rule.is_surge(count, baseline, observed)


@SETTINGS
@given(rule=RULES, count=COUNTS, more=st.integers(0, 1_000_000), baseline=BASELINES, observed=OBSERVED)
def test_more_events_never_end_a_surge(
    rule: BaselineRatio, count: int, more: int, baseline: int, observed: float
) -> None:
    if rule.is_surge(count, baseline, observed):
        assert rule.is_surge(count + more, baseline, observed)


@SETTINGS
@given(rule=RULES, count=COUNTS, baseline=BASELINES, more=st.integers(0, 1_000_000), observed=OBSERVED)
def test_a_busier_baseline_never_makes_a_surge(
    rule: BaselineRatio, count: int, baseline: int, more: int, observed: float
) -> None:
    if rule.is_surge(count, baseline + more, observed):
        assert rule.is_surge(count, baseline, observed)


@SETTINGS
@given(rule=RULES, count=COUNTS, baseline=BASELINES, observed=OBSERVED)
def test_a_surge_is_the_ratio_over_what_the_baseline_predicts(
    rule: BaselineRatio, count: int, baseline: int, observed: float
) -> None:
    learned = rule.learning is None or observed >= rule.learning
    expected = rule.expected_in_window(baseline, observed)
    assert rule.is_surge(count, baseline, observed) == (
        count >= rule.min_count and learned and count >= rule.ratio * expected
    )
    # The prediction is the baseline's rate over the span it covers, for one window; nothing when not counted.
    assert expected == max(baseline, 0) / rule.baseline_span(observed) * rule.window


@SETTINGS
@given(rule=RULES, observed=OBSERVED)
def test_the_baseline_covers_what_was_observed_of_it_and_a_day_at_least(rule: BaselineRatio, observed: float) -> None:
    span = rule.baseline_span(observed)
    assert span <= rule.baseline
    assert span >= min(rule.baseline, MIN_BASELINE_SPAN)
    if observed - rule.window >= MIN_BASELINE_SPAN:
        assert span == min(rule.baseline, observed - rule.window)


@SETTINGS
@given(rule=RULES, count=COUNTS, baseline=BASELINES, share=st.floats(0, 1))
def test_nothing_is_a_surge_while_learning(rule: BaselineRatio, count: int, baseline: int, share: float) -> None:
    if rule.learning is not None and rule.learning > 0:
        assert not rule.is_surge(count, baseline, math.nextafter(rule.learning, 0) * share)
