"""The kernel that `cervix book` executes notebooks with (cervixlib.book.kernel).

The stall of jupyter/nbclient#312 is modelled by a socket whose wake-up is missed: its
poll returns only when its own timeout expires, and then finds the message waiting
(what pyzmq's final poll at the deadline does). The stock channel then waits the whole
timeout; ours, at most one slice.
"""

from __future__ import annotations

import asyncio
import os
import stat
import json
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel

from cervixlib import book
from cervixlib.book import kernel

REPO = Path(__file__).resolve().parents[1]


class _MissedWakeupSocket(zmq.asyncio.Socket):
    """A socket with a message waiting whose poll still sleeps its whole timeout."""

    ready: bool = True  # declared on the class: pyzmq takes other attribute names for socket options
    polls: list = []

    def __init__(self, ready: bool = True) -> None:
        super().__init__(zmq.asyncio.Context.instance(), zmq.DEALER)
        self.ready, self.polls = ready, []

    async def poll(self, timeout_ms: int | None = None) -> int:
        self.polls.append(timeout_ms)
        if timeout_ms is None:
            await asyncio.Event().wait()  # for ever: the edge never comes
        await asyncio.sleep(timeout_ms / 1000)
        return 1 if self.ready else 0


def _channel(cls: type, socket: _MissedWakeupSocket) -> AsyncZMQSocketChannel:
    class Channel(cls):  # type: ignore[misc, valid-type]
        async def _recv(self, **kwargs):  # the message that was there all along
            return {"parent_header": {"msg_id": "x"}, "content": {"status": "ok"}}

    return Channel(socket, session=None)


def _timed(coro, limit: float) -> tuple[object, float]:
    t = time.perf_counter()
    result = asyncio.run(asyncio.wait_for(coro, limit))
    return result, time.perf_counter() - t


def test_the_stock_channel_waits_the_whole_timeout_for_a_message_that_is_there():
    # the bug, reproduced with the model: 2 s of waiting for a message already queued
    msg, seconds = _timed(_channel(AsyncZMQSocketChannel, _MissedWakeupSocket()).get_msg(timeout=2), 10)
    assert msg["content"]["status"] == "ok" and seconds >= 2


def test_a_sliced_channel_finds_the_message_within_one_slice():
    sock = _MissedWakeupSocket()
    msg, seconds = _timed(_channel(kernel.SlicedChannel, sock).get_msg(timeout=1800), 10)
    assert msg["content"]["status"] == "ok"
    assert seconds < kernel.POLL_SLICE + 0.5
    assert sock.polls == [int(kernel.POLL_SLICE * 1000)]


def test_a_sliced_channel_without_timeout_still_finds_the_message():
    # timeout=None is how nbclient waits for IOPub output, and for replies on the paper profile
    msg, seconds = _timed(_channel(kernel.SlicedChannel, _MissedWakeupSocket()).get_msg(timeout=None), 10)
    assert msg["content"]["status"] == "ok" and seconds < kernel.POLL_SLICE + 0.5


def test_a_sliced_channel_keeps_the_overall_timeout():
    sock = _MissedWakeupSocket(ready=False)
    t = time.perf_counter()
    with pytest.raises(Empty):
        _timed(_channel(kernel.SlicedChannel, sock).get_msg(timeout=1.2), 10)
    assert time.perf_counter() - t >= 1.199  # Empty comes at the deadline (to the poll's 1 ms), not before
    # two whole slices, then what is left of the 1.2 s (less the loop's own overhead, which
    # a loaded machine makes larger), and no zero-length polls spinning up to the deadline
    assert sock.polls[:2] == [500, 500] and len(sock.polls) == 3
    assert 0 < sock.polls[2] <= 200


def _notebook(path: Path, *cells: nbformat.NotebookNode) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}), *cells]
    nbformat.write(nb, path)
    return path


def test_book_kernel_runs_over_ipc_skips_live_only_cells_and_prints_no_tcp_warning(tmp_path, capfd):
    src = _notebook(
        tmp_path / "nb.ipynb",
        nbformat.v4.new_code_cell("raise RuntimeError('a live-only cell ran')",
                                  metadata={"tags": ["skip-execution", "remove-cell"]}),
        nbformat.v4.new_code_cell("import json, os, sys\n"
                                  "cf = json.load(open(sys.argv[sys.argv.index('-f') + 1]))\n"
                                  "print(cf['transport'], x + 1)"),
    )
    out = book.execute_notebook(src, tmp_path / "out.ipynb", {"x": 41}, cwd=tmp_path, cell_timeout=60)
    cells = nbformat.read(out, as_version=4).cells
    skipped = next(c for c in cells if "skip-execution" in c.metadata.get("tags", []))
    assert skipped.outputs == [] and skipped.execution_count is None
    assert cells[-1].outputs[0]["text"].strip() == "ipc 42"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err
    assert not [p.name for p in tmp_path.iterdir() if "ipc" in p.name]  # no sockets left in the working dir


def test_each_kernel_has_private_sockets_of_its_own():
    a, b = kernel.BookKernelManager(), kernel.BookKernelManager()
    assert a.ip != b.ip and os.path.dirname(a.ip) == os.path.dirname(b.ip)
    assert os.path.isabs(a.ip) and len(a.ip) <= 96
    assert stat.S_IMODE(os.stat(os.path.dirname(a.ip)).st_mode) & 0o077 == 0  # only the user


def test_no_chapter_executes_a_live_widget_under_papermill():
    # a cell that builds a live explorer needs a browser attached to the kernel: cervix book
    # must skip it, and the rendered book leaves it out (the static figure stands in)
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and ("ig_explorer(" in source or "ipywidgets" in source):
                tags = cell.get("metadata", {}).get("tags", [])
                assert {"skip-execution", "remove-cell"} <= set(tags), (path.name, source[:60])
