"""The Jupyter kernel manager ``cervix book`` executes notebooks with.

Two changes to jupyter_client's stock ``AsyncKernelManager``, both through its public,
configurable traits:

* **Bounded waits on the kernel's sockets.** nbclient waits for a cell's reply with
  ``shell_channel.get_msg(timeout=T)``, where T is the cell limit (None: for ever), and
  for its output with ``iopub_channel.get_msg(timeout=None)``. On some runs the reply
  is already in the socket's queue while the wait goes on until T expires: the zmq
  file descriptor is edge-triggered and the wake-up is missed (jupyter/nbclient#312,
  with ipywidgets cells). The cell then seems to take T seconds (1,800 in the default
  book) and no error is raised, because at the deadline the queue is polled once more
  and the reply is found. :class:`SlicedChannel` waits in slices of at most
  :data:`POLL_SLICE` seconds, each ending with that same poll, so a missed wake-up
  costs a fraction of a second instead of the whole limit. The overall timeout
  keeps its meaning.
* **IPC transport.** The kernel and the client share one machine, so Unix sockets
  replace loopback TCP; no port is opened, and ipykernel no longer prints its "running
  over TCP without encryption" warning into the user's terminal at every start.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.localinterfaces import localhost
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import CaselessStrEnum, DottedObjectName, Type, default

__all__ = ["POLL_SLICE", "BookKernelClient", "BookKernelManager", "SlicedChannel"]

#: The longest single wait on a kernel socket, in seconds.
POLL_SLICE = 0.5
_MAX_SOCKET_PREFIX = 96


class SlicedChannel(AsyncZMQSocketChannel):
    """A kernel channel whose ``get_msg(timeout)`` waits in slices of :data:`POLL_SLICE`."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await super().get_msg(timeout=min(POLL_SLICE, left))
            except Empty:
                # the parent polls in whole milliseconds (it truncates): with under one
                # left, polling again would only spin on zero-length polls to the deadline
                if deadline is not None and deadline - time.monotonic() < 0.001:
                    raise


class BookKernelClient(AsyncKernelClient):
    """``AsyncKernelClient`` whose shell and IOPub waits are sliced (:class:`SlicedChannel`)."""

    shell_channel_class = Type(SlicedChannel)  # type: ignore[assignment]
    iopub_channel_class = Type(SlicedChannel)  # type: ignore[assignment]


class BookKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` over IPC whose clients are :class:`BookKernelClient`.

    The IPC sockets live in the user's private Jupyter runtime folder under a name of
    their own: jupyter_client's default, ``kernel-ipc-N`` in the kernel's working
    directory, put sockets into ``notebooks/`` and let two kernels started there at once
    take the same ones.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    client_class = DottedObjectName("cervixlib.book.kernel.BookKernelClient")

    @default("ip")
    def _private_socket_prefix(self) -> str:
        if self.transport != "ipc":
            return localhost()
        folder = jupyter_runtime_dir()
        os.makedirs(folder, mode=0o700, exist_ok=True)
        prefix = os.path.join(folder, f"cervix-{uuid.uuid4().hex[:12]}-ipc")
        if len(prefix) > _MAX_SOCKET_PREFIX:  # a Unix socket path has about 107 bytes
            prefix = os.path.join(tempfile.mkdtemp(prefix="cervix-"), "ipc")
        return prefix
