"""SDP offers and answers: SDES-SRTP on RTP/SAVP, and the caller's answer check."""

from __future__ import annotations

import base64
import re

from ivagate_kit.sdp import SRTP_SUITE, Sdp, answer_problems, build_answer, build_offer
from ivagate_kit.sipmsg import SipMessage


def test_srtp_offer_carries_one_sdes_key() -> None:
    """An SRTP offer is RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 key of 30 bytes."""
    offer = Sdp.parse(build_offer("192.0.2.1", 4000, srtp=True))
    assert offer.profile == "RTP/SAVP" and offer.port == 4000
    (crypto,) = offer.crypto
    tag, suite, key = crypto.split()
    assert (tag, suite) == ("1", SRTP_SUITE)
    assert len(base64.b64decode(key.removeprefix("inline:"))) == 30
    assert Sdp.parse(build_offer("192.0.2.1", 4000, srtp=False)).profile == "RTP/AVP"


def test_answer_mirrors_the_offer() -> None:
    """The stand-in answers SRTP with SRTP (its own key) and plain RTP with plain RTP."""
    srtp_offer = build_offer("192.0.2.1", 4000, srtp=True)
    answer = build_answer(srtp_offer, "192.0.2.2", 4002)
    assert answer_problems(srtp_offer, answer) == []
    assert Sdp.parse(answer).crypto[0] != Sdp.parse(srtp_offer).crypto[0]
    plain = build_offer("192.0.2.1", 4000, srtp=False)
    assert "a=crypto" not in build_answer(plain, "192.0.2.2", 4002)


def test_freeswitch_answer_passes_the_check(recorded_messages: list[bytes]) -> None:
    """FreeSWITCH's recorded RTP/SAVP answer satisfies the check for an SRTP offer."""
    ok = SipMessage.parse(recorded_messages[1])
    assert answer_problems(build_offer("127.0.0.1", 4000, srtp=True), ok.body) == []


def test_answer_problems_are_named() -> None:
    """A plain answer to SRTP, a rejected stream, and a missing body each get a reason."""
    offer = build_offer("192.0.2.1", 4000, srtp=True)
    plain = build_answer(build_offer("192.0.2.1", 4000, srtp=False), "192.0.2.2", 4002)
    assert any("RTP/AVP" in p for p in answer_problems(offer, plain))
    assert any("a=crypto" in p for p in answer_problems(offer, plain))
    rejected = re.sub(r"m=audio \d+", "m=audio 0", build_answer(offer, "192.0.2.2", 4002))
    assert any("rejected" in p for p in answer_problems(offer, rejected))
    assert answer_problems(offer, "") == ["the 200 OK carries no SDP"]
