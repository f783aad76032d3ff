"""Prompt encoding, a byte tokenizer for the tiny test models, and streaming detokenization."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["ByteTokenizer", "encode_prompt", "TextStream"]


class ByteTokenizer:
    """UTF-8 bytes as tokens, for tiny random models that have no tokenizer files.

    Ids 0-255 are bytes; 256-258 are BOS, EOS and PAD; anything above decodes to nothing.
    """

    bos_token_id = 256
    eos_token_id = 257
    pad_token_id = 258
    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """The bytes of ``text`` (no special token is ever added; the flag is the
        transformers tokenizers' keyword, accepted so callers need not tell them apart)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a user message, through the chat template when the model has one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    return ([bos] if bos is not None else []) + list(tokenizer.encode(prompt))


class TextStream:
    """Turns a growing list of token ids into text pieces as they become printable.

    Decoding token by token breaks multi-byte characters and merged spaces, so the stream
    decodes a window of recent tokens and emits only the new, complete suffix. The window
    restarts after a newline (where no tokenizer merges across), keeping the cost linear.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._start = 0
        self._printed = 0

    def push(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        text = self.tokenizer.decode(self.ids[self._start :], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece = text[self._printed :]
        if text.endswith("\n"):
            self._start, self._printed = len(self.ids), 0
        else:
            self._printed = len(text)
        return piece
