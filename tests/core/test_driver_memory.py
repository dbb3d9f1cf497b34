"""The driver of a build never opens the data, so its memory does not grow with it.

With more than one process, builders, global steps, the id check, the outputs and the card run
in a forked child (``meddata.engine.child.in_child``) or a worker; the driver only plans, reuses
and accounts. The test watches the driver's memory map while a build runs: a memory-mapped
checkpoint or output file in it means some code opened the rows in the driver.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import datasets
import pytest
from meddata.filters.dedup import ExactDedup, MinHashDedup
from meddata.filters.split import Split
from testutil import EXAMPLES

from meddata import publish, recipe
from meddata.engine.child import ChildDied, in_child
from meddata.errors import UserError
from meddata.steps import GlobalResult, GlobalStep, StepContext


class MapsWatcher:
    """Samples /proc/self/maps every few milliseconds for Arrow files under ``root``."""

    def __init__(self, root: Path):
        self.root, self.seen, self._stop = str(root), set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    path = line.rstrip("\n").split(maxsplit=5)[-1]
                    if path.startswith(self.root) and path.endswith(".arrow"):
                        self.seen.add(path)
            time.sleep(0.003)

    def __enter__(self) -> MapsWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class KeepAll(GlobalStep):
    """A global step defined inside a test module: it runs in the child without being pickled."""

    name = "test_keep_all"
    description = "test-only global step"

    def apply(self, dataset: datasets.Dataset, ctx: StepContext) -> GlobalResult:
        self.stat_update("rows_seen", len(dataset))
        return GlobalResult(source=dataset)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_the_driver_never_maps_a_checkpoint_or_an_output(tmp_path):
    rec = recipe.load(EXAMPLES / "recipes" / "quickstart.yaml")
    rec.steps = [*rec.steps, KeepAll(), ExactDedup(), MinHashDedup(), Split()]
    rec.output.card = True
    with MapsWatcher(tmp_path) as watch:
        result = publish.build(rec, tmp_path / "out", num_proc=2)
    assert watch.seen == set(), f"the driver memory-mapped {sorted(watch.seen)}"
    assert result.totals["out"] > 400 and (result.out_dir / "README.md").exists()
    keep_all = next(s for s in result.steps if s.name == "test_keep_all")
    assert keep_all.counters["rows_seen"] == keep_all.rows_in  # counters come back from the child
    assert all(s.driver_peak_mb > 0 for s in result.steps)
    # the watcher can fail: opening the output here shows up in the map
    with MapsWatcher(tmp_path) as watch:
        ds = datasets.load_from_disk(str(result.dataset_dir))["train"]
        time.sleep(0.05)
    assert watch.seen and len(ds) > 0


def _raise_user_error(message: str) -> None:
    raise UserError(message)


def test_in_child_raises_the_childs_error_with_its_traceback():
    with pytest.raises(UserError, match="bad recipe field") as err:
        in_child(_raise_user_error, "bad recipe field")
    assert "_raise_user_error" in str(err.value.__cause__)


def test_in_child_returns_results_of_functions_defined_anywhere():
    base = 40

    def add(x: int) -> tuple[int, int]:  # a closure: nothing is pickled on the way in
        return base + x, os.getpid()

    value, pid = in_child(add, 2)
    assert value == 42 and pid != os.getpid()


def _killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_child_killed_by_the_system_is_a_one_line_error():
    with pytest.raises(ChildDied, match=r"_killed .*killed by signal SIGKILL.*--num-proc"):
        in_child(_killed)


def test_an_answer_that_cannot_be_sent_back_says_so():
    with pytest.raises(RuntimeError, match="returned lock, which cannot be sent back"):
        in_child(threading.Lock)
