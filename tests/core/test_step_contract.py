"""Errors at ``meddata validate`` instead of mid-build, and the step life cycle: requirements
and declared input columns checked when a recipe loads, setup errors that name the step,
explicit per-worker state that is never pickled, and a teardown() the runner calls (which
closes the LLM clients of LLM steps)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from llm_server import LLMServer
from testutil import EXAMPLES

from meddata import pipeline, recipe, registry
from meddata.errors import MissingDependencyError, RecipeError, StepSetupError
from meddata.extras import install_hint, missing
from meddata.steps import Mapper, StepContext

QA = {"builder": "table", "path": str(EXAMPLES / "data" / "medquad_sample.jsonl"), "source": "medquad",
      "columns": {"user": "question", "assistant": "answer"}}
DIALOGUE = {"builder": "dialogue_transcripts", "path": str(EXAMPLES / "data" / "dialogue" / "mts_dialog_sample.csv"),
            "source": "mts"}


def load(data: dict) -> recipe.Recipe:
    return recipe.from_dict({"name": "t", "inputs": [QA], **data}, source="r.yaml")


# -- recipe checks -----------------------------------------------------------------------------------
def test_an_export_typo_fails_when_the_recipe_loads_naming_the_choices():
    with pytest.raises(RecipeError, match=r"field 'output.exports': unknown export 'alpacca'; did you mean 'alpaca'\? "
                                          r"\(choose from: alpaca, sharegpt, trl_standard\)"):
        load({"output": {"exports": ["alpacca"]}})


def test_an_unknown_engine_fails_when_the_recipe_loads_naming_the_choices():
    with pytest.raises(RecipeError, match=r"field 'engine.name': unknown engine 'rey'; did you mean 'ray'\? "
                                          r"\(choose from: local, ray\)"):
        load({"engine": {"name": "rey"}})


def test_meddata_validate_reports_it_in_one_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "inputs": [QA], "output": {"exports": ["csv"]}}))
    proc = subprocess.run([sys.executable, "-m", "meddata", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown export 'csv'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_step_that_reads_columns_nothing_produces_fails_at_load():
    # mcq_template reads exam columns; dialogue transcripts produce messages and sections only
    with pytest.raises(RecipeError, match=r"steps\[0\] 'mcq_instruction' reads 'question'.* but no input or earlier "
                                          r"step produces it \(available: .*messages.*\)"):
        recipe.from_dict({"name": "t", "inputs": [DIALOGUE], "steps": ["mcq_instruction"]}, source="r.yaml")
    # the same step after an exam input loads
    exam = {"builder": "exam", "path": str(EXAMPLES / "data" / "exam" / "medqa_usmle_sample.jsonl"), "format": "medqa"}
    assert recipe.from_dict({"name": "t", "inputs": [exam], "steps": ["mcq_instruction"]}).steps[0].name


def test_every_example_recipe_passes_the_load_time_checks():
    for path in sorted((EXAMPLES / "recipes").glob("*.yaml")):
        assert recipe.load(path).inputs, path


class NeedsLiger(Mapper):
    name = "needs_liger_test_step"
    description = "A step that needs an optional GPU library (test)."
    requires = ("liger_kernel",)

    def process(self, row, ctx):
        return row


@pytest.fixture
def needs_liger():
    registry.register(NeedsLiger)
    yield
    registry.STEPS._items.pop(NeedsLiger.name)


def test_a_missing_optional_library_fails_at_load_with_the_extra_to_install(needs_liger):
    if not missing(("liger_kernel",)):
        pytest.skip("liger-kernel is installed here (a CUDA machine)")
    with pytest.raises(MissingDependencyError, match=r"r.yaml: steps\[0\] 'needs_liger_test_step': liger_kernel is "
                                                     r'not installed; pip install "meddata\[gpu\]"'):
        load({"steps": ["needs_liger_test_step"]})


def test_one_install_hint_map_covers_every_optional_library():
    assert install_hint("gguf") == 'gguf is not installed; pip install "meddata[local-model]"'
    assert install_hint("bitsandbytes.nn") == 'bitsandbytes is not installed; pip install "meddata[gpu]"'
    assert install_hint("some_lib") == "some_lib is not installed; pip install some_lib"
    from meddata.cli._extras import install_hint as cli_hint

    assert cli_hint(ModuleNotFoundError(name="spacy")) == 'spacy is not installed; pip install "meddata[deid]"'
    assert cli_hint(ModuleNotFoundError(name="not_an_extra")) is None


# -- setup, worker state, teardown ---------------------------------------------------------------------
class Counting(Mapper):
    """Writes one file per setup and per teardown, so a test sees them across processes."""

    name = "counting_test_step"
    description = "Counts setups and teardowns (test)."
    batch_size = 4
    worker_state = ("_handle",)

    def setup(self, ctx):
        if (ctx.recipe_dir / "fail").exists():
            raise OSError("vocabulary file is unreadable")
        self._handle = uuid.uuid4().hex  # one per setup, in whichever process
        (ctx.recipe_dir / f"setup-{self._handle}").write_text("")

    def process(self, row, ctx):
        assert "_handle" in self.__dict__
        return row

    def teardown(self):
        if "_handle" in self.__dict__:
            Path(self.marker_dir, f"teardown-{self._handle}").write_text("")
        super().teardown()


@pytest.fixture
def counting():
    registry.register(Counting)
    yield
    registry.STEPS._items.pop(Counting.name)


def _run(tmp_path: Path, num_proc: int) -> pipeline.BuildResult:
    rec = recipe.from_dict({"name": "t", "inputs": [QA], "steps": ["counting_test_step"]}, base_dir=tmp_path)
    Counting.marker_dir = str(tmp_path)
    return pipeline.run(rec, tmp_path / f"out{num_proc}", num_proc=num_proc)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_the_runner_tears_down_every_copy_it_set_up(counting, tmp_path, num_proc):
    result = _run(tmp_path, num_proc)
    assert result.rows_out > 0
    setups = {p.name.split("-", 1)[1] for p in tmp_path.glob("setup-*")}
    teardowns = {p.name.split("-", 1)[1] for p in tmp_path.glob("teardown-*")}
    assert len(setups) >= num_proc and teardowns == setups


def test_worker_state_never_travels_in_a_pickle():
    step = Counting()
    step._handle, step._ready = object(), True  # what setup() leaves behind
    copy = pickle.loads(pickle.dumps(step))
    assert "_handle" not in copy.__dict__ and copy._ready is False and copy.is_worker_copy
    assert not step.is_worker_copy


def test_a_setup_error_names_the_step_in_one_user_error(counting, tmp_path):
    (tmp_path / "fail").write_text("")
    for num_proc in (1, 2):
        with pytest.raises(StepSetupError, match="step 'counting_test_step' could not set up: vocabulary file is "
                                                 "unreadable"):
            _run(tmp_path, num_proc)


def test_an_llm_step_closes_its_client_on_teardown(tmp_path):
    from meddata.builders.generators.passage_qa import PassageQA

    server = LLMServer().start()
    try:
        ctx = StepContext(step_dir=tmp_path, recipe_dir=tmp_path,
                          llm_configs={"local": {"model": "fake-med", "base_url": server.url, "cache": "c.sqlite"}})
        step = PassageQA(llm="local")
        step.ensure_setup(ctx)
        client = step.client(ctx)
        assert client is step.client(ctx) and not client.closed
        assert "_client" not in pickle.loads(pickle.dumps(step)).__dict__
        step.teardown()
        assert client.closed and "_client" not in step.__dict__ and "_prompt" not in step.__dict__
        assert step.client(ctx) is not client  # a later use opens a new one
        step.teardown()
    finally:
        server.stop()


def test_an_unknown_llm_backend_fails_at_load_naming_the_choices():
    with pytest.raises(RecipeError, match=r"llms.*unknown LLM backend 'vllm' \(choose from: openai, transformers\)"):
        load({"llms": {"local": {"backend": "vllm", "model": "m"}}})


def test_an_engine_needing_a_missing_library_fails_at_load(tmp_path):
    from meddata.engine.base import ENGINES

    if not missing(("liger_kernel",)):
        pytest.skip("liger-kernel is installed here (a CUDA machine)")
    ENGINES.register_lazy("gpu_test_engine", "meddata.engine.local:LocalEngine", requires=("liger_kernel",))
    try:
        with pytest.raises(MissingDependencyError, match=r"r.yaml: engine 'gpu_test_engine': liger_kernel is not "
                                                         r'installed; pip install "meddata\[gpu\]"'):
            load({"engine": {"name": "gpu_test_engine"}})
    finally:
        ENGINES._lazy.pop("gpu_test_engine")
        ENGINES._requires.pop("gpu_test_engine")
