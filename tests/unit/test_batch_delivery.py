"""A batch's delivery future: resolved by the last acknowledgement, failed by the first error."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streams.producer import DeliveryError, _BatchDelivery

_ERROR: Any = "broker said no"
_MESSAGE: Any = None


def test_the_future_resolves_when_the_last_message_is_acknowledged() -> None:
    delivery = _BatchDelivery(3)

    delivery(None, _MESSAGE)
    delivery(None, _MESSAGE)
    assert not delivery.future.done()
    delivery(None, _MESSAGE)

    assert delivery.future.result(0) is None


def test_an_empty_batch_is_delivered_at_once() -> None:
    assert _BatchDelivery(0).future.result(0) is None


def test_one_failed_message_fails_the_batch_whatever_comes_after() -> None:
    delivery = _BatchDelivery(3)

    delivery(None, _MESSAGE)
    delivery(_ERROR, _MESSAGE)
    delivery(_ERROR, _MESSAGE)
    delivery(None, _MESSAGE)

    with pytest.raises(DeliveryError, match="broker said no"):
        delivery.future.result(0)


def test_acknowledgements_from_two_threads_are_all_counted() -> None:
    per_thread = 20_000
    delivery = _BatchDelivery(2 * per_thread)

    def acknowledge() -> None:
        for _ in range(per_thread):
            delivery(None, _MESSAGE)

    threads = [threading.Thread(target=acknowledge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert delivery.future.result(0) is None
