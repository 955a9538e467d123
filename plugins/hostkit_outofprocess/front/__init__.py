"""The front: the module's public side, which listens on ``urls`` and forwards to children.

- :mod:`~hostkit_outofprocess.front.server`: :class:`ModuleServer`, the ``Server`` a front
  runs (listeners, the child manager, the heartbeat, app_offline and the configuration watch);
- :mod:`~hostkit_outofprocess.front.connection`: one client connection and its request loop;
- :mod:`~hostkit_outofprocess.front.http2`: a connection that speaks HTTP/2 (ALPN ``h2``, or
  the preface of prior knowledge): the ``h2`` state machine, the flood guard, one task per
  stream, each stream an exchange forwarded as HTTP/1.1;
- :mod:`~hostkit_outofprocess.front.client_input`: how a connection's bytes reach its parser,
  :mod:`~hostkit_outofprocess.front.request_parser` (llhttp, h11's interface and strictness);
- :mod:`~hostkit_outofprocess.front.exchange`: one request and its response (and
  :mod:`~hostkit_outofprocess.front.tunnel`, after a WebSocket handshake), with the gateway's
  duties (forwarded headers, request id, health paths, the limit);
- :mod:`~hostkit_outofprocess.front.records`: a request's access log line and metrics, once
  it is over;
- :mod:`~hostkit_outofprocess.front.deadlines`: the heartbeat's deadlines, a body's pace;
- :mod:`hostkit.request_rules` (the core's, the same on every public listener) and
  :mod:`~hostkit_outofprocess.front.header_rules`: what is refused, what crosses;
- :mod:`~hostkit_outofprocess.front.wire`: the bytes the front writes;
- :mod:`~hostkit_outofprocess.front.upstream`: the children as an exchange reaches them, and
  the connection pool to each;
- :mod:`~hostkit_outofprocess.front.streams`: sockets, per event loop, behind one interface;
- :mod:`~hostkit_outofprocess.front.identity`: who is on a connection (authentication);
- :mod:`~hostkit_outofprocess.front.pages`: the front's own error pages.
"""
