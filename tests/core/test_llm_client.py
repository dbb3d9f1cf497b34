"""The LLM client against a real OpenAI-protocol server on 127.0.0.1 (tests/kits/llm_server.py),
through the real ``openai.AsyncOpenAI`` client: order, cache, concurrency, retries on every
injected fault, structured output with repair, rate limits, accounting, config errors."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from llm_server import LLMServer

from meddata.llm import ChatRequest, LLMClient, LLMConfigError, usage_counters
from meddata.llm.config import parse_config

QA_SCHEMA = {
    "type": "object",
    "properties": {"pairs": {"type": "array", "minItems": 1, "items": {
        "type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        "required": ["question", "answer"]}}},
    "required": ["pairs"],
}


@pytest.fixture
def server():
    srv = LLMServer().start()
    yield srv
    srv.stop()


def make_client(server: LLMServer, tmp_path, name: str = "local", **overrides) -> LLMClient:
    raw = {"model": "fake-med", "base_url": server.url, "backoff_base": 0.01, "timeout": 5, "max_retries": 3,
           **overrides}
    cfg = parse_config(name, raw)
    cache = None if cfg.cache is False else tmp_path / "cache.sqlite"
    return LLMClient(name, cfg, cache_path=cache)


def ask(text: str, **kw) -> ChatRequest:
    """A request built from public text unless ``phi_status`` says otherwise (the default is raw)."""
    kw.setdefault("phi_status", "not_applicable")
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def test_order_kept_tokens_and_cost_counted(server, tmp_path):
    client = make_client(server, tmp_path, max_concurrency=4, prices={"input_per_1k": 2.0, "output_per_1k": 10.0})
    texts = [f"Patient education item number {i} explains insulin storage rules." for i in range(12)]
    out = client.generate([ask(t, key=str(i)) for i, t in enumerate(texts)])
    assert [r.error for r in out] == [None] * 12
    for i, r in enumerate(out):
        assert f"number {i} " in r.text  # the fake answers with the request's own sentence
        assert r.prompt_tokens > 0 and r.completion_tokens > 0 and not r.cached
        assert r.cost == pytest.approx(r.prompt_tokens / 1000 * 2.0 + r.completion_tokens / 1000 * 10.0)
    s = client.stats
    assert s["requests"] == 12 and s["sent"] == 12 and s["cached"] == 0
    assert s["prompt_tokens"] == sum(r.prompt_tokens for r in out)
    assert s["cost"] == pytest.approx(sum(r.cost for r in out))
    counters = usage_counters(out)
    assert counters["llm.requests"] == 12 and counters["llm.prompt_tokens"] == s["prompt_tokens"]
    assert "llm.cached" not in counters
    client.close()


def test_cache_answers_a_rerun_without_sending(server, tmp_path):
    reqs = [ask(f"Question {i} about the mechanism of metformin in type 2 diabetes.") for i in range(5)]
    first = make_client(server, tmp_path)
    a = first.generate(reqs)
    first.close()
    assert len(server.chat_log()) == 5
    second = make_client(server, tmp_path)  # a new client, as a re-run would build
    b = second.generate(reqs)
    assert len(server.chat_log()) == 5, "a cached request was sent again"
    assert all(r.cached for r in b) and [r.text for r in a] == [r.text for r in b]
    assert usage_counters(b) == {"llm.requests": 5, "llm.cached": 5}
    second.close()
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 5


def test_key_and_phi_status_are_not_part_of_the_cache_key_but_parameters_are(server, tmp_path):
    client = make_client(server, tmp_path)
    client.generate([ask("Define tachycardia in adults.", key="a")])
    out = client.generate([ask("Define tachycardia in adults.", key="b", phi_status="deidentified"),
                           ask("Define tachycardia in adults.", max_tokens=99)])
    assert [r.cached for r in out] == [True, False]
    assert len(server.chat_log()) == 2
    client.close()


def test_identical_requests_in_one_batch_are_sent_once(server, tmp_path):
    client = make_client(server, tmp_path, cache=False)
    out = client.generate([ask("What is anemia?")] * 4 + [ask("What is anemia?", seed=1)])
    assert len(server.chat_log()) == 2
    assert [r.cached for r in out] == [False, True, True, True, False]
    assert len({r.text for r in out[:4]}) == 1
    client.close()


def test_concurrency_limit_holds(server, tmp_path):
    server.latency = 0.15
    client = make_client(server, tmp_path, max_concurrency=3, cache=False)
    out = client.generate([ask(f"Item {i} on renal dosing of antibiotics.") for i in range(12)])
    assert all(r.ok for r in out)
    assert server.max_inflight == 3
    client.close()


def test_429_retry_after_is_honoured(server, tmp_path):
    server.add_fault("429", count=1, retry_after=1.0)
    client = make_client(server, tmp_path, backoff_base=0.01)
    (r,) = client.generate([ask("Explain the Glasgow Coma Scale.")])
    assert r.ok and r.retries == 1
    log = server.chat_log()
    assert [e["status"] for e in log] == [429, 200]
    # backoff_base is 10 ms, so only Retry-After can explain a gap of a second
    assert log[1]["t"] - log[0]["t"] >= 0.95
    client.close()


@pytest.mark.parametrize("kind", ["500", "invalid_body", "truncated", "disconnect"])
def test_transient_faults_are_retried(server, tmp_path, kind):
    server.add_fault(kind, count=2)
    client = make_client(server, tmp_path)
    (r,) = client.generate([ask("What does an elevated troponin indicate?")])
    assert r.ok and r.retries == 2, r.error
    assert len(server.chat_log()) == 3
    assert client.stats["retries"] == 2
    client.close()


def test_timeout_is_retried(server, tmp_path):
    server.add_fault("slow", count=1, delay=4.0)
    client = make_client(server, tmp_path, timeout=0.5)
    t0 = time.monotonic()
    (r,) = client.generate([ask("List the signs of sepsis.")])
    assert r.ok and r.retries == 1
    assert time.monotonic() - t0 < 3.0
    client.close()


@pytest.mark.parametrize("kind,reason", [("invalid_body", "not valid JSON"), ("truncated", "connection error"),
                                         ("500", "HTTP 500"), ("slow", "timeout after 0.3s")])
def test_persistent_faults_end_in_an_error_not_a_crash(server, tmp_path, kind, reason):
    server.add_fault(kind, count=None, delay=2.0)
    client = make_client(server, tmp_path, max_retries=2, timeout=0.3)
    out = client.generate([ask("What is the normal range of serum sodium?"), ask("Define hyponatremia.")])
    for r in out:
        assert r.text is None and r.parsed is None and not r.cached
        assert reason in r.error and "gave up after 3 attempts" in r.error
        assert r.retries == 2
    # Every attempt was sent; on a loaded machine an attempt can time out client-side before the
    # server's loop reads it, so the server may log fewer, never more.
    assert 2 <= len(server.chat_log()) <= 6
    assert client.stats["errors"] == 2
    # transport failures are not cached: the next run tries again
    server.clear_faults()
    assert all(r.ok for r in client.generate([ask("Define hyponatremia.")]))
    client.close()


def test_permanent_error_is_not_retried_and_server_detail_only_for_non_phi(server, tmp_path):
    server.add_fault("400", count=2)
    client = make_client(server, tmp_path)
    safe, raw = client.generate([ask("Patient Jane Roe has fever.", phi_status="not_applicable"),
                                 ask("Patient John Doe has fever.", phi_status="raw")])
    assert len(server.chat_log()) == 2
    assert safe.error.startswith("HTTP 400") and "invalid request near" in safe.error
    assert raw.error.startswith("HTTP 400") and "John" not in raw.error
    client.close()


def test_invalid_json_gets_one_repair_turn(server, tmp_path):
    server.add_fault("bad_content", count=1)
    client = make_client(server, tmp_path)
    (r,) = client.generate([ask("The liver makes bile. Bile emulsifies fats in the duodenum.", json_schema=QA_SCHEMA)])
    assert r.ok and r.parsed["pairs"][0]["answer"]
    log = server.chat_log()
    assert len(log) == 2
    repair = log[1]["body"]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"] == log[0]["reply"]
    assert "could not be used" in repair[-1]["content"]
    assert log[1]["body"]["response_format"]["type"] == "json_schema"
    client.close()


def test_invalid_json_after_repair_is_an_error_with_the_raw_text(server, tmp_path):
    server.add_fault("bad_content", count=None, match="emulsifies")
    client = make_client(server, tmp_path)
    bad, good = client.generate([ask("Bile emulsifies fats in the duodenum.", json_schema=QA_SCHEMA),
                                 ask("Insulin lowers blood glucose in the fasting state.", json_schema=QA_SCHEMA)])
    assert good.ok and isinstance(good.parsed, dict)
    assert bad.parsed is None and bad.invalid_output
    assert bad.error.startswith("invalid JSON output after one repair retry: not valid JSON")
    assert bad.text == "Sure! Here is the JSON you asked for: {pairs: ["
    assert client.stats["invalid_output"] == 1
    # a content failure is an answer: cached, so a re-run does not pay for it again
    again = client.generate([ask("Bile emulsifies fats in the duodenum.", json_schema=QA_SCHEMA)])
    assert again[0].cached and again[0].error == bad.error
    client.close()


def test_schema_violation_names_path_and_rule_without_values(server, tmp_path):
    # json_object mode: the fake answers {"answer": ...}, which lacks the required "pairs"
    client = make_client(server, tmp_path, response_format="json_object")
    (r,) = client.generate([ask("Aspirin irreversibly inhibits cyclooxygenase.", json_schema=QA_SCHEMA)])
    assert r.error == "invalid JSON output after one repair retry: JSON does not match the schema at $: fails 'required'"
    assert "cyclooxygenase" not in r.error
    assert server.chat_log()[0]["body"]["response_format"] == {"type": "json_object"}
    client.close()


def test_plain_prompt_mode_sends_no_response_format(server, tmp_path):
    client = make_client(server, tmp_path, response_format="none")
    (r,) = client.generate([ask("Heparin potentiates antithrombin.", json_mode=True)])
    assert "response_format" not in server.chat_log()[0]["body"]
    assert r.invalid_output and r.error.startswith("invalid JSON output")
    client.close()


@pytest.mark.parametrize("limit", [{"rpm": 120}, {"tpm": 120000}])
def test_rate_limits_slow_a_burst_down(server, tmp_path, limit):
    # rpm 120: a bucket of 2, then one request per 0.5 s. tpm 120,000: a bucket of 2,000 tokens
    # refilled at 2,000/s; each request uses ~1,008 tokens (a 1,000-word system prompt), so six
    # need >= (6 * 1,008 - 2,000) / 2,000 s. Either way six requests take at least ~2 s.
    filler = "lorem " * 1000
    client = make_client(server, tmp_path, cache=False, **limit)
    t0 = time.monotonic()
    out = client.generate([ChatRequest(messages=[{"role": "system", "content": filler},
                                                 {"role": "user", "content": f"Short item {i}."}], max_tokens=16)
                           for i in range(6)])
    assert all(r.ok for r in out)
    assert time.monotonic() - t0 >= 1.8
    client.close()


def test_raw_phi_goes_to_a_local_endpoint_but_is_not_cached(server, tmp_path):
    client = make_client(server, tmp_path)
    reqs = [ask("Mr. Smith, DOB 01/02/1950, presents with chest pain.", phi_status="raw")]
    assert client.generate(reqs)[0].ok
    assert not client.generate(reqs)[0].cached
    assert len(server.chat_log()) == 2
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0
    client.close()
    opted_in = make_client(server, tmp_path, name="opted", cache_raw=True)
    opted_in.generate(reqs)
    assert opted_in.generate(reqs)[0].cached
    opted_in.close()


def test_recipe_temperature_overrides_requests(server, tmp_path):
    client = make_client(server, tmp_path, temperature=0.7)
    client.generate([ask("What is a normal resting heart rate?", temperature=0.0, seed=3)])
    body = server.chat_log()[0]["body"]
    assert body["temperature"] == 0.7 and body["seed"] == 3 and body["model"] == "fake-med"
    client.close()


def test_api_key_comes_from_the_named_env_var_and_is_never_logged(server, tmp_path, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MEDDATA_TEST_LLM_KEY", secret)
    server.add_fault("500", count=1)
    client = make_client(server, tmp_path, api_key_env="MEDDATA_TEST_LLM_KEY")
    with caplog.at_level(logging.DEBUG):
        assert client.generate([ask("What is the antidote for warfarin?")])[0].ok
    assert server.chat_log()[0]["authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text and secret not in repr(client)
    client.close()


def test_config_errors_name_the_llm_and_the_key(monkeypatch):
    with pytest.raises(LLMConfigError, match=r"llms\.local: key 'max_concurrency': .*greater than or equal to 1"):
        parse_config("local", {"model": "m", "max_concurrency": 0})
    with pytest.raises(LLMConfigError, match=r"llms\.local: unknown key 'concurency'; did you mean 'max_concurrency'\?"):
        parse_config("local", {"model": "m", "concurency": 8})
    with pytest.raises(LLMConfigError, match=r"llms\.tiny: .*needs 'model_path'"):
        parse_config("tiny", {"backend": "transformers"})
    with pytest.raises(LLMConfigError, match=r"llms\.local: key 'prices\.input_per_1k'"):
        parse_config("local", {"model": "m", "prices": {"input_per_1k": -1}})
    monkeypatch.delenv("MEDDATA_NO_SUCH_KEY", raising=False)
    with pytest.raises(LLMConfigError, match=r"llms\.remote: key 'api_key_env': environment variable MEDDATA_NO_SUCH_KEY"):
        LLMClient("remote", parse_config("remote", {"model": "m", "api_key_env": "MEDDATA_NO_SUCH_KEY"}))


def test_base_url_and_model_expand_environment_variables(monkeypatch):
    monkeypatch.delenv("MEDDATA_TEST_URL", raising=False)
    cfg = parse_config("x", {"model": "${MEDDATA_TEST_MODEL:-qwen}", "base_url": "${MEDDATA_TEST_URL:-http://127.0.0.1:8000/v1}"})
    assert cfg.effective_base_url == "http://127.0.0.1:8000/v1" and cfg.effective_model == "qwen"
    monkeypatch.setenv("MEDDATA_TEST_URL", "http://localhost:11434/v1")
    assert cfg.effective_base_url == "http://localhost:11434/v1"
    with pytest.raises(LLMConfigError, match="MEDDATA_TEST_UNSET"):
        _ = parse_config("x", {"model": "m", "base_url": "${MEDDATA_TEST_UNSET}"}).effective_base_url


def test_models_endpoint_answers_the_openai_client(server):
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="EMPTY", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["fake-med-llm"]
    client.close()


def test_client_for_gives_one_client_per_process_and_llm(server, tmp_path):
    from meddata.llm import client_for
    from meddata.steps import StepContext

    ctx = StepContext(step_dir=tmp_path, recipe_dir=tmp_path,
                      llm_configs={"local": {"model": "fake-med", "base_url": server.url, "cache": "c.sqlite"}})
    a, b = ctx.llm("local"), ctx.llm("local")
    assert a is b and a.cache_path == tmp_path / "c.sqlite"  # relative cache paths follow the recipe folder
    other = client_for("local", {"model": "other", "base_url": server.url, "cache": "c.sqlite"}, ctx)
    assert other is not a
    assert a.generate([ask("What is the half-life of adenosine?")])[0].ok
    a.close()
    a.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        a.generate([ask("x")])
    fresh = ctx.llm("local")
    assert fresh is not a and fresh.generate([ask("What is the half-life of adenosine?")])[0].cached
    fresh.close()
    other.close()
    with pytest.raises(KeyError, match="no LLM named 'remote'"):
        ctx.llm("remote")
