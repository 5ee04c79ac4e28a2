"""Sans-I/O protocol state machines: bytes or messages in, events out, no awaits.

``exec_stream`` (process and PTY streams), ``jupyter`` (kernel messages), ``sse``
(server-sent events).
"""
