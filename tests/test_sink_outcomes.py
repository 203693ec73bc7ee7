"""How an HTTP answer becomes an outcome, and when a row is tried again or given up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.sinks.base import RETRY_AFTER_MAX, Outcome, Status, classify, retry_after
from triage.sinks.schedule import BASE, CAP, HELD, after, backoff

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "headers", "status", "wait"),
    [
        (200, {}, Status.SENT, None),
        (202, {}, Status.SENT, None),  # Teams workflows answer 202 Accepted
        (204, {}, Status.SENT, None),
        (408, {}, Status.RETRY, None),
        (429, {"Retry-After": "30"}, Status.RETRY, 30.0),
        (429, {"retry-after": "Tue, 10 Mar 2026 12:02:00 GMT"}, Status.RETRY, 120.0),
        (500, {}, Status.RETRY, None),
        (502, {}, Status.RETRY, None),
        (503, {"Retry-After": "5"}, Status.RETRY, 5.0),
        (400, {}, Status.FAILED, None),
        (401, {}, Status.FAILED, None),
        (404, {}, Status.FAILED, None),
        (410, {}, Status.FAILED, None),  # Standard Webhooks: the receiver wants no more
        (301, {"Location": "https://new.example/hook"}, Status.FAILED, None),
    ],
)
def test_classify(code, headers, status, wait):
    outcome = classify(code, headers, b"the receiver's words", NOW, "POST")
    assert outcome.status is status
    assert outcome.code == code
    assert outcome.retry_after == wait
    assert outcome.said.startswith(f"POST HTTP {code}: the receiver's words")


def test_a_redirect_names_where_the_url_should_point():
    outcome = classify(308, {"Location": "https://new.example/hook"}, b"", NOW)
    assert "set the url to https://new.example/hook" in outcome.said


def test_the_receivers_answer_is_kept_short_on_one_line():
    outcome = classify(500, {}, b"line one\n\nline two " + b"x" * 2000, NOW)
    assert "\n" not in outcome.said and len(outcome.said) <= 500


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("17", 17.0),
        ("Tue, 10 Mar 2026 11:59:00 GMT", 0.0),  # in the past: now
        ("999999999", RETRY_AFTER_MAX),  # capped
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value, seconds):
    assert retry_after(value, NOW) == seconds


def test_backoff_grows_and_is_capped_and_spread():
    assert backoff(1, 0.5) == BASE
    assert backoff(2, 0.5) == BASE * 4
    assert backoff(30, 0.5) == CAP
    assert backoff(1, 0.0) == BASE * 0.75
    assert backoff(1, 0.999999) == pytest.approx(BASE * 1.25)


def test_a_sent_row_is_sent():
    assert after(Outcome.sent("ok", 200), 1, 10, NOW, 0.5).state == "sent"


def test_a_permanent_failure_is_dead_at_once():
    nxt = after(Outcome.failed("HTTP 404", 404), 1, 10, NOW, 0.5)
    assert nxt.dead and nxt.attempts == 1 and nxt.said == "HTTP 404"


def test_a_retry_waits_the_backoff():
    nxt = after(Outcome.retry("HTTP 500", 500), 3, 10, NOW, 0.5)
    assert nxt.state == "pending" and nxt.attempts == 3
    assert nxt.at == NOW + timedelta(seconds=BASE * 16)


def test_retry_after_is_honoured_and_never_shortened():
    nxt = after(Outcome.retry("HTTP 429", 429, retry_after=90.0), 1, 10, NOW, 0.0)
    assert nxt.at == NOW + timedelta(seconds=90)
    later = after(Outcome.retry("HTTP 429", 429, retry_after=90.0), 1, 10, NOW, 0.9)
    assert NOW + timedelta(seconds=90) < later.at <= NOW + timedelta(seconds=90 * 1.25)


def test_the_last_allowed_attempt_makes_the_row_dead_with_the_last_answer():
    nxt = after(Outcome.retry("HTTP 503", 503), 10, 10, NOW, 0.5)
    assert nxt.dead
    assert nxt.said == "gave up after 10 attempts; last: HTTP 503"


def test_a_failure_of_our_own_does_not_count_as_an_attempt():
    held = Outcome.ours("signing secret file:/etc/triage/hook: not found")
    nxt = after(held, 10, 10, NOW, 0.0)
    assert nxt.state == "pending" and nxt.attempts == 9  # never dead for our own fault
    assert nxt.at == NOW + timedelta(seconds=HELD)


def test_jitter_outside_its_range_is_refused():
    with pytest.raises(ValueError):
        after(Outcome.retry("x"), 1, 10, NOW, 1.0)
