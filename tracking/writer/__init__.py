"""A writer process that owns the MLflow client, so a training process pays microseconds per epoch, not ms.

MLflow's SQLite store spends ~9 ms of CPU in the calling process on every ``log_batch``, and a thread would
take that CPU from the trainer through the GIL. So one child process per training process does the MLflow
work on another core, fed through a pipe:

- :mod:`tracking.writer.messages`: the protocol, typed messages and replies;
- :mod:`tracking.writer.client`: the training process's end (:class:`Writer`, :func:`shared_writer`);
- :mod:`tracking.writer.server`: the child process (run as ``python -c "from tracking.writer.server
  import main; main()"``).

A trial does not talk to the writer itself: it writes through a :class:`tracking.transport.Transport`,
which is either the writer or this process's own client.
"""

from tracking.writer.client import STOP_SECONDS, Writer, WriterGone, shared_writer, start_writer, stop_shared_writer
from tracking.writer.messages import LINGER_SECONDS

__all__ = [
    "LINGER_SECONDS",
    "STOP_SECONDS",
    "Writer",
    "WriterGone",
    "shared_writer",
    "start_writer",
    "stop_shared_writer",
]
