"""Local backend: a causal LM from a folder, a ``.gguf`` file or a local model's short name
(``smollm2-135m-instruct``, see :mod:`meddata.models`), batched generation with the
tokenizer's chat template, on CPU or GPU. Nothing leaves the machine, so the PHI guard
always passes.

Requests with a JSON schema are decoded under the schema (:mod:`.constrained`): the JSON
skeleton is forced and the model writes only the values, so even a 135M model answers in
the right shape. ``response_format: none`` in the LLM's settings turns this off (the prompt
alone asks for JSON, as with a server that ignores ``response_format``).

Requests arriving together (the client launches a whole batch at once) are collected into
batches of ``batch_size`` by a small micro-batcher and generated in a worker thread, so
the event loop stays free. Requests with different sampling settings go in separate
``generate`` calls. The per-request timeout does not apply: a CPU batch may simply be slow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path

from meddata.llm.backends.base import Backend, Completion, PermanentError
from meddata.llm.config import LLMConfig
from meddata.llm.types import ChatRequest

logger = logging.getLogger("meddata.llm")


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, llm_name: str, config: LLMConfig):
        super().__init__(config.effective_model)
        self.llm_name = llm_name
        self.model_ref = str(config.model_path)
        self.path = Path(self.model_ref).expanduser()
        self.constrain = config.response_format != "none"
        self.device_spec = config.device
        self.dtype_spec = config.dtype
        self.batch_size = config.batch_size
        self._pending: list[tuple[ChatRequest, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._model = None
        self._tokenizer = None
        self._device = None
        self._vocab = None

    @property
    def is_local(self) -> bool:
        return True

    @property
    def endpoint(self) -> str:
        return f"local:{self.path}"

    async def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((request, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let the rest of a launched batch enqueue first
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            batch = [(r, f) for r, f in batch if not f.cancelled()]
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._generate, [r for r, _ in batch])
            except PermanentError as exc:
                for _, f in batch:
                    if not f.done():
                        f.set_exception(PermanentError(exc.reason, exc.detail))
                continue
            except Exception as exc:  # a failing batch fails its requests, not the run
                logger.debug("local generation failed", exc_info=True)
                for _, f in batch:
                    if not f.done():
                        f.set_exception(PermanentError(f"local generation failed ({type(exc).__name__})"))
                continue
            for (_, f), res in zip(batch, results):
                if not f.done():
                    f.set_result(res)

    # -- runs in a worker thread -------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from meddata.models import ModelError, is_model_reference, resolve_model

        if is_model_reference(self.model_ref):
            try:
                self.path = Path(resolve_model(self.model_ref))
            except ModelError as exc:
                raise PermanentError(f"llms.{self.llm_name}: {exc}") from None
        if not self.path.is_dir():
            raise PermanentError(f"llms.{self.llm_name}: model_path {self.path} is not a folder")
        device = self.device_spec
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.dtype_spec)
        if dtype is None:  # auto
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        try:
            tok = AutoTokenizer.from_pretrained(str(self.path))
            try:
                model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype)
            except TypeError:  # transformers < 4.56 names it torch_dtype
                model = AutoModelForCausalLM.from_pretrained(str(self.path), torch_dtype=dtype)
            model = model.to(device)
        except (OSError, ValueError) as exc:
            raise PermanentError(f"llms.{self.llm_name}: cannot load the model in {self.path} ({type(exc).__name__})") from None
        if not getattr(tok, "chat_template", None):
            raise PermanentError(f"llms.{self.llm_name}: the tokenizer in {self.path} has no chat template")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model.eval()
        self._tokenizer, self._model, self._device = tok, model, device
        logger.info("llms.%s: loaded %s on %s", self.llm_name, self.path, device)

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        if self._model is None:
            self._load()
        tok, model = self._tokenizer, self._model
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.temperature, r.max_tokens, r.seed)].append(i)
        out: list[Completion | None] = [None] * len(requests)
        stop_ids = {tok.eos_token_id, tok.pad_token_id} - {None}
        for (temperature, max_tokens, seed), idxs in groups.items():
            texts = [tok.apply_chat_template(requests[i].messages, tokenize=False, add_generation_prompt=True)
                     for i in idxs]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
            kwargs = {"max_new_tokens": max_tokens, "pad_token_id": tok.pad_token_id, "do_sample": temperature > 0}
            if temperature > 0:
                kwargs["temperature"] = temperature
                if seed is not None:
                    torch.manual_seed(seed)
            processor = self._schema_processor([requests[i] for i in idxs], max_tokens)
            if processor is not None:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList([processor])
            with torch.no_grad():
                generated = model.generate(**enc, **kwargs)
            new = generated[:, enc["input_ids"].shape[1]:].tolist()
            for j, i in enumerate(idxs):
                ids = new[j]
                end = next((k for k, t in enumerate(ids) if t in stop_ids), len(ids))
                out[i] = Completion(
                    text=tok.decode(ids[:end], skip_special_tokens=True),
                    prompt_tokens=int(enc["attention_mask"][j].sum()),
                    completion_tokens=end,
                    model=self.model,
                    finish_reason="stop" if end < len(ids) else "length",
                )
        return out  # type: ignore[return-value]

    def _schema_processor(self, requests: list[ChatRequest], max_tokens: int):
        """A logits processor forcing each schema request's JSON shape (None when no request
        of the batch has a schema the walker supports, or constraining is off)."""
        from meddata.llm.backends import constrained

        if not self.constrain or not any(r.json_schema for r in requests):
            return None
        if self._vocab is None:
            try:
                self._vocab = constrained.Vocabulary(self._tokenizer, self._model.config.vocab_size)
            except constrained.Unsupported as exc:
                logger.warning("llms.%s: constrained decoding off (%s)", self.llm_name, exc)
                self.constrain = False
                return None
        rows = []
        for r in requests:
            factory = constrained.compile_schema(r.json_schema, self._vocab) if r.json_schema else None
            rows.append(constrained.RowState(factory() if factory else None, self._vocab, max_tokens))
        if not any(row.constrained for row in rows):
            return None
        return constrained.SchemaLogitsProcessor(rows)

    async def aclose(self) -> None:
        self._model = self._tokenizer = None
