"""Hugging Face `generate` of the same model: the peers our methods are measured against.

`generate` runs in a worker thread and hands tokens over through a streamer, so the HF
methods stream and are timed by the same driver as ours.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

from selfspec.decoding import Chunk, Origin
from selfspec.loading import LoadedModel
from selfspec.sampling import SamplingConfig

__all__ = ["hf_generate"]

_DONE = object()


class _QueueStreamer:
    """transformers streamer protocol: put() gets the prompt first, then new tokens."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(_DONE)


def hf_generate(
    lm: LoadedModel, prompt_ids: list[int], cfg: SamplingConfig, **generate_kwargs
) -> Iterator[Chunk]:
    """`model.generate` with our sampling settings plus any extra generate arguments."""
    from transformers import GenerationConfig

    eos = sorted(lm.eos_ids)
    # Generation settings (prompt_lookup_num_tokens, assistant_early_exit, ...) belong in
    # the config; objects such as assistant_model go to generate() itself.
    known = GenerationConfig().to_dict()
    settings = {k: v for k, v in generate_kwargs.items() if k in known}
    generate_kwargs = {k: v for k, v in generate_kwargs.items() if k not in known}
    gen_config = GenerationConfig(
        **settings,
        max_new_tokens=cfg.max_new_tokens,
        do_sample=not cfg.greedy,
        temperature=cfg.temperature if not cfg.greedy else None,
        top_k=(cfg.top_k or None) if not cfg.greedy else None,
        top_p=cfg.top_p if not cfg.greedy else None,
        eos_token_id=eos or None,
        pad_token_id=eos[0] if eos else None,
    )
    input_ids = torch.tensor([prompt_ids], device=lm.device)
    streamer = _QueueStreamer()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            with torch.inference_mode():
                lm.hf_model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=gen_config,
                    streamer=streamer,
                    **generate_kwargs,
                )
        except BaseException as exc:  # handed to the consuming thread
            failure.append(exc)
        finally:
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := streamer.queue.get()) is not _DONE:
            yield Chunk(item, [Origin.TARGET] * len(item))
        if failure:
            raise failure[0]
    finally:
        thread.join()
