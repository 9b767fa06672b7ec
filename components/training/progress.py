"""Per-epoch progress from Ray Train workers to a tqdm bar in the driver.

Ray Train callbacks run in the controller actor, whose output the user never
sees, and worker stdout is kept out of the console. So rank 0 puts one small
dict per epoch on a Ray queue (an actor, so this works on a cluster too), and
a thread in the driver turns them into a progress bar and one line per epoch.

The queue actor lives on the driver's node (a worker node can be lost with
its workers), and progress is never a reason to fail: an event that cannot
be delivered is dropped.
"""

from __future__ import annotations

import contextlib
import queue as stdlib_queue
import sys
import threading
from typing import Iterator

from ray.util.queue import Empty, Queue
from tqdm import tqdm


def publish(channel: Queue | None, **event) -> None:
    """Worker side: send one event, e.g. ``publish(q, step=3, line="layer 1 epoch 3 ...")``.

    ``step`` is the number of units of work done so far; ``line`` is printed
    above the bar; ``postfix`` (a short dict) is shown beside it.
    """
    if channel is None:
        return
    try:
        channel.put(event, timeout=5)
    except Exception:  # noqa: BLE001 (the queue's actor is gone or busy: the bar misses an epoch)
        pass


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Queue | None]:
    """Driver side: yield a queue for the workers and draw what arrives on it."""
    if not enabled:
        yield None
        return
    channel = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": _on_this_node()})  # no worker's CPU
    stop = threading.Event()
    # Not a terminal (CI, a log file): per-epoch lines only, no redrawn bar.
    bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True,
               disable=not sys.stderr.isatty())
    thread = threading.Thread(target=_drain, args=(channel, bar, stop), daemon=True)
    thread.start()
    try:
        yield channel
    finally:
        stop.set()
        thread.join(timeout=10)
        bar.close()
        channel.shutdown()


def _on_this_node():
    """Pin an actor to the driver's node: it outlives any worker node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)


def _drain(channel: Queue, bar: tqdm, stop: threading.Event) -> None:
    while True:
        try:
            event = channel.get(timeout=0.1)  # short: the stage waits for this thread to see `stop`
        except (Empty, stdlib_queue.Empty):
            if stop.is_set():
                return
            continue
        except Exception:  # the queue actor is gone: the run is over
            return
        _show(bar, event)


def _show(bar: tqdm, event: dict) -> None:
    if "line" in event:
        bar.write(event["line"], file=sys.stderr)
    if "step" in event:
        bar.n = event["step"]
    if "postfix" in event:
        bar.set_postfix(event["postfix"], refresh=False)
    bar.refresh()
