"""Single headers read out of a plain event's header block, without parsing the rest."""

from __future__ import annotations

import pytest

from ivagate.events import find_header, header_value, variables_start

BLOCK = (
    "Event-Name: CHANNEL_EXECUTE_COMPLETE\n"
    "Unique-ID: 1234\n"
    "Caller-Caller-ID-Number: %2B16505550100\n"
    "variable_sip_req_user: 15550001000\n"
    "variable_current_application: park\n"
    "Application: playback\n"
    "Application-UUID: abcd\n"
)


@pytest.mark.parametrize("from_end", [False, True])
@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("Event-Name", "CHANNEL_EXECUTE_COMPLETE"),  # the first line
        ("Caller-Caller-ID-Number", "%2B16505550100"),
        ("Application-UUID", "abcd"),  # the last line
        ("Application-Response", None),  # absent
        ("Application-UUI", None),  # a prefix of a header's name is not that header
        ("Name", None),  # nor is the end of one
    ],
)
def test_find_header(name: str, raw: str | None, from_end: bool) -> None:
    assert find_header(BLOCK, name, from_end=from_end) == raw


def test_header_value_decodes_and_searches_from_where_it_is_told() -> None:
    assert header_value(BLOCK, "Caller-Caller-ID-Number") == "+16505550100"
    start = variables_start(BLOCK)
    assert BLOCK[start:].startswith("\nvariable_sip_req_user: ")
    assert header_value(BLOCK, "variable_sip_req_user", start) == "15550001000"
    assert header_value(BLOCK, "Unique-ID", start) == ""  # before the start: not seen
    assert variables_start("Event-Name: DTMF\n") == 0
