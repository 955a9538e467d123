"""How the front times its waits on clients and children.

A connection's waits for a request head and for a child's response head have a *deadline*,
a float on ``time.monotonic``'s clock (a C call; anyio's clock asks sniffio which loop runs,
every time), checked by the server's heartbeat every :data:`HEARTBEAT` seconds, as Kestrel's
heartbeat does once a second: a timer armed and cancelled around every wait is a large share
of what forwarding a small request costs, and with the heartbeat a wait costs a float
assignment. :class:`Wait` says what the deadline is for, so how the front answers when it
passes. A request body's pace is checked differently (:class:`BodyPace`): its allowance
grows with every byte received.
"""

from __future__ import annotations

import enum

#: How often the server checks its connections' deadlines; a deadline is kept to within this.
HEARTBEAT = 0.25


class Wait(enum.Enum):
    """What a connection's deadline is for, and what the front answers when it passes."""

    #: the client's next request head: 408 if one began (a silent idle connection just
    #: closes).
    NEXT_HEAD = "next head"
    #: the child's response head (``request_timeout``): 504.
    RESPONSE = "response"


class BodyPace:
    """How long the front waits for the next bytes of a request body (slow-client defence).

    The body gets ``grace`` seconds (``server.request_header_timeout``) of waiting, plus
    1/:attr:`MIN_RATE` s for every byte received, counting only the time spent waiting on the
    client (not on the child): Kestrel's ``MinRequestBodyDataRate`` of 240 bytes/s, with the
    header timeout as its grace period. A body trickling slower is cut off with 408.
    """

    __slots__ = ("grace", "received", "waited")

    MIN_RATE = 240.0

    def __init__(self, grace: float):
        self.grace = grace
        self.received = 0
        self.waited = 0.0

    def allowance(self) -> float:
        """Seconds the front may still wait for the client's next body bytes."""
        return max(0.0, self.grace + self.received / self.MIN_RATE - self.waited)
