"""hostkit/http2_floods.py: the frame scanner and its budgets, on bytes made by real encoders
(the ``h2`` library as a client, ``hyperframe`` for frames a client should not send)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from hostkit.configuration.tables import ServerOptions
from hostkit.http2_floods import CLIENT_PREFACE, Budget, FloodLimits, FrameWatch
from hostkit.plugin import FloodLimits as PluginFloodLimits
from hostkit.plugin import FrameWatch as PluginFrameWatch


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(limits: FloodLimits | None = None, clock: Clock | None = None,
          preface: bool = True) -> FrameWatch:
    return FrameWatch(limits or FloodLimits(), preface=preface, clock=clock or Clock())


def serialized(*frames: Frame) -> bytes:
    return b"".join(frame.serialize() for frame in frames)


def frames_until_violation(fw: FrameWatch, frame: Frame, at_most: int) -> int:
    """Feed ``frame`` one at a time; the number fed when the watch objected."""
    data = frame.serialize()
    for count in range(1, at_most + 1):
        if fw.feed(data) is not None:
            return count
    raise AssertionError(f"{at_most} frames and no violation")


def client_traffic(streams: int, body: bytes = b"") -> bytes:
    """What a real HTTP/2 client (the h2 library) sends for ``streams`` requests, 100 at a
    time, to a server (h2 too) that answers each with 400 bytes: the preface, SETTINGS and their
    ACK, each request's HEADERS (and DATA), the WINDOW_UPDATEs of what it read."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    sent = []

    def exchange() -> None:
        data = client.data_to_send()
        sent.append(data)
        for event in server.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                server.send_headers(event.stream_id, [(":status", "200")])
                server.send_data(event.stream_id, b"r" * 200)
                server.send_data(event.stream_id, b"r" * 200, end_stream=True)
            elif isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        read = sum(event.flow_controlled_length
                   for event in client.receive_data(server.data_to_send())
                   if isinstance(event, h2.events.DataReceived))
        if read:  # the connection's window given back, as a client that has read it
            client.increment_flow_control_window(read)

    exchange()
    for batch in range(0, streams, 100):
        for index in range(batch, min(batch + 100, streams)):
            stream_id = client.get_next_available_stream_id()
            client.send_headers(stream_id, [(":method", "POST" if body else "GET"),
                                            (":path", f"/item/{index}?q=x"),
                                            (":scheme", "https"), (":authority", "localhost"),
                                            ("user-agent", "test"), ("accept", "*/*")],
                                end_stream=not body)
            if body:
                client.send_data(stream_id, body, end_stream=True)
        exchange()
        exchange()  # the WINDOW_UPDATEs of the responses read
    return b"".join(sent)


def test_exported_from_the_plugin_api():
    assert PluginFloodLimits is FloodLimits and PluginFrameWatch is FrameWatch


def test_limits_of_server_options():
    limits = FloodLimits.of(ServerOptions(http2_max_concurrent_streams=7,
                                          http2_max_header_list_size=4096))
    assert (limits.max_concurrent_streams, limits.max_header_list_size) == (7, 4096)
    assert limits.reset_budget == Budget(100, 33)
    assert FloodLimits(max_concurrent_streams=250).reset_budget == Budget(500, 33)
    assert FloodLimits(resets=Budget(5, 1)).reset_budget == Budget(5, 1)
    assert FloodLimits().max_continuations == 9


def test_a_real_clients_traffic_passes_whole_and_byte_by_byte():
    # 1,000 requests, in batches of 100 per read (the concurrent-stream limit), with bodies.
    data = client_traffic(1000, body=b"x" * 300)
    fw = watch()
    chunk = len(data) // 10 + 1
    for start in range(0, len(data), chunk):
        assert fw.feed(data[start:start + chunk]) is None
    assert fw.last_stream_id == 1999
    byte_by_byte = watch()
    for index in range(len(data)):
        assert byte_by_byte.feed(data[index:index + 1]) is None
    assert byte_by_byte.frames == fw.frames > 2000


def test_splitting_anywhere_reads_the_same_frames():
    data = serialized(SettingsFrame(0, settings={4: 65535}), PingFrame(0, b"12345678"),
                      HeadersFrame(1, b"\x82\x84\x87", flags=["PADDED", "END_HEADERS"],
                                   pad_length=9),
                      DataFrame(1, b"", flags=["PADDED"], pad_length=3),
                      DataFrame(1, b"abc", flags=["END_STREAM"]),
                      RstStreamFrame(1, error_code=8))
    whole = watch()
    assert whole.feed(CLIENT_PREFACE + data) is None
    assert whole.frames == 6
    for cut in range(1, len(CLIENT_PREFACE) + len(data)):
        for second_cut in (cut, min(cut + 5, len(CLIENT_PREFACE) + len(data))):
            fw = watch()
            payload = CLIENT_PREFACE + data
            assert fw.feed(payload[:cut]) is None
            assert fw.feed(payload[cut:second_cut]) is None
            assert fw.feed(payload[second_cut:]) is None
            assert fw.frames == 6, cut


def test_settings_flood_is_stopped_after_its_burst_and_refills():
    clock = Clock()
    fw = watch(clock=clock, preface=False)
    # ACKs are free: a client acknowledges the server's SETTINGS.
    for _ in range(1000):
        assert fw.feed(SettingsFrame(0, flags=["ACK"]).serialize()) is None
    assert frames_until_violation(fw, SettingsFrame(0, settings={3: 100}), 1000) == 33
    assert "SETTINGS flood" in fw.feed(b"")  # it stays a violation

    refilled = watch(clock=clock, preface=False)
    frame = SettingsFrame(0, settings={3: 100}).serialize()
    for _ in range(32):
        assert refilled.feed(frame) is None
    clock.now += 1.0  # four more a second
    for _ in range(4):
        assert refilled.feed(frame) is None
    assert refilled.feed(frame) is not None


def test_ping_flood_but_not_acks():
    fw = watch(preface=False)
    for _ in range(1000):
        assert fw.feed(PingFrame(0, b"\0" * 8, flags=["ACK"]).serialize()) is None
    assert frames_until_violation(fw, PingFrame(0, b"\0" * 8), 1000) == 65


def test_rapid_reset():
    fw = watch(preface=False)
    for stream_id in range(1, 2 * 1000, 2):
        reason = fw.feed(serialized(HeadersFrame(stream_id, b"\x82\x84\x87",
                                                 flags=["END_HEADERS", "END_STREAM"]),
                                    RstStreamFrame(stream_id, error_code=8)))
        if reason is not None:
            break
    assert reason is not None and "rapid reset" in reason
    assert stream_id == 2 * 201 - 1  # the 201st reset, with 100 concurrent streams


def test_too_many_new_streams_in_one_read():
    headers = [HeadersFrame(stream_id, b"\x82\x84\x87", flags=["END_HEADERS", "END_STREAM"])
               for stream_id in range(1, 2 * 201, 2)]
    assert "stream flood" in watch(preface=False).feed(serialized(*headers))
    # The same streams in reads of at most 200 are what a busy client sends.
    fw = watch(preface=False)
    assert fw.feed(serialized(*headers[:200])) is None
    assert fw.feed(serialized(*headers[200:])) is None
    # Trailers (HEADERS on a stream already open) open nothing.
    trailers = [HeadersFrame(1, b"\x82", flags=["END_HEADERS", "END_STREAM"])] * 500
    assert watch(preface=False).feed(serialized(headers[0], *trailers)) is None


def test_continuation_flood_by_count():
    fw = watch(preface=False)
    assert fw.feed(HeadersFrame(1, b"\x82\x84", flags=[]).serialize()) is None
    count = frames_until_violation(fw, ContinuationFrame(1, b"\x87"), 100)
    assert count == FloodLimits().max_continuations + 1 == 10
    assert "CONTINUATION flood" in fw.violation


def test_continuation_flood_by_bytes():
    fw = watch(FloodLimits(max_header_list_size=4096), preface=False)
    assert fw.feed(HeadersFrame(1, b"\x82" * 1000, flags=[]).serialize()) is None
    assert fw.feed(ContinuationFrame(1, b"a" * 3000).serialize()) is None
    assert "header block flood" in fw.feed(ContinuationFrame(1, b"a" * 1500).serialize())
    # One HEADERS frame past the limit is enough.
    single = watch(FloodLimits(max_header_list_size=4096), preface=False)
    assert "header block flood" in single.feed(
        HeadersFrame(1, b"a" * 6000, flags=["END_HEADERS"]).serialize())
    # A block that ends within the limits resets the count for the next one.
    fine = watch(preface=False)
    for stream_id in range(1, 200, 2):
        assert fine.feed(serialized(HeadersFrame(stream_id, b"\x82" * 8000),
                                    ContinuationFrame(stream_id, b"\x84" * 8000),
                                    ContinuationFrame(stream_id, b"\x87",
                                                      flags=["END_HEADERS"]))) is None


def test_empty_frames():
    fw = watch(preface=False)
    # Empty DATA with END_STREAM ends a request body: not empty in this sense.
    for _ in range(500):
        assert fw.feed(DataFrame(1, b"", flags=["END_STREAM"]).serialize()) is None
    assert frames_until_violation(fw, DataFrame(1, b""), 100) == 33
    padded = watch(preface=False)
    frame = DataFrame(1, b"", flags=["PADDED"], pad_length=20).serialize()
    for _ in range(32):
        assert padded.feed(frame[:9]) is None  # the pad length arrives in the next read
        assert padded.feed(frame[9:]) is None
    assert "empty frame" in padded.feed(frame)
    empty_continuations = watch(preface=False)
    assert empty_continuations.feed(HeadersFrame(1, b"\x82").serialize()) is None
    assert empty_continuations.feed(serialized(*[ContinuationFrame(1, b"")] * 9)) is None
    assert empty_continuations.feed(ContinuationFrame(1, b"").serialize()) is not None


def test_priority_window_update_and_unknown_frames():
    assert frames_until_violation(watch(preface=False), PriorityFrame(3, depends_on=1),
                                  1000) == 257
    window_updates = watch(preface=False)
    batch = WindowUpdateFrame(0, window_increment=1).serialize() * 1000
    for index in range(1, 30):
        if window_updates.feed(batch) is not None:
            break
    assert index == 21  # 20,000 at once
    unknown = watch(preface=False)
    frame = b"\x00\x00\x04\xfa\x00\x00\x00\x00\x00abcd"  # type 0xFA, 4 bytes
    for count in range(1, 100):
        if unknown.feed(frame) is not None:
            break
    assert count == 65


def test_a_steady_window_update_rate_passes():
    clock = Clock()
    fw = watch(clock=clock, preface=False)
    frame = WindowUpdateFrame(1, window_increment=32768).serialize()
    for _ in range(50):  # five seconds at 19,000 a second
        assert fw.feed(frame * 1900) is None
        clock.now += 0.1


def test_without_preface():
    fw = watch(preface=False)
    assert fw.feed(SettingsFrame(0).serialize()) is None
    assert fw.frames == 1
    with_preface = watch()
    assert with_preface.feed(CLIENT_PREFACE[:10]) is None
    assert with_preface.feed(CLIENT_PREFACE[10:] + SettingsFrame(0).serialize()) is None
    assert with_preface.frames == 1


@pytest.mark.parametrize("kind", ["settings", "pings"])
def test_budgets_are_settings_of_the_limits(kind):
    limits = FloodLimits(**{kind: Budget(2, 0)})
    frame = SettingsFrame(0, settings={3: 1}) if kind == "settings" else PingFrame(0, b"\0" * 8)
    assert frames_until_violation(watch(limits, preface=False), frame, 10) == 3
