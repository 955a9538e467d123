"""The child side of OutOfProcess: what runs inside a child the front started.

- :mod:`~hostkit_outofprocess.child.integration`: :class:`IntegrationMiddleware`, outermost
  in the child's pipeline (the token check, the forwarded client, scheme, path base and
  identity).

The identity headers it decodes are written by the front with
:mod:`hostkit_outofprocess.forwarded_identity`, which both sides share.
"""
