"""An on-disk cache of pooled backbone features, stored as append-only safetensors shards.

Layout: ``<cache_dir>/<settings digest>/shard-<UTC time>-<random hex>.safetensors``, one
folder per combination of backbone fingerprint, ``max_length``, pooling, normalization and
dtype (described in that folder's ``settings.json``). A shard contains two tensors:
``keys`` (uint8 [n, 32], the sha256 of the settings and the item) and ``features``
(float32 [n, dim]), plus a sha256 checksum of both in its metadata.

A lookup reads every shard of the folder, encodes only the items it did not find, and
writes a new shard each time about ``shard_items`` of them are encoded, so an
interrupted encoding keeps every finished shard. Each shard is written to a temporary
file in the same folder and moved into place with ``os.replace``, so readers never see
a partial shard. Shards
are never rewritten, and processes that run at the same time write separate shards.

A shard that cannot be parsed, does not match the folder's settings or fails its checksum
is renamed to ``*.corrupt`` (kept for inspection, never read again), logged as a warning,
and its items are encoded again. Because writes are atomic, such a shard means that the
file was changed after it was written, and rebuilding is safe because the cache only
contains derived data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
import hashlib
import json
import logging
import os
from pathlib import Path
import uuid

import safetensors
from safetensors import safe_open
import safetensors.torch
import torch

from vrm.backbones.encoder import Backbone, Item

logger = logging.getLogger(__name__)

CACHE_FORMAT = "vrm-feature-cache/1"
KEY_BYTES = 32
SHARD_PATTERN = "shard-*.safetensors"


@dataclass(frozen=True)
class CacheStats:
    """Counts for one lookup: requested items, distinct items, cache hits and newly encoded items."""

    items: int
    unique: int
    hits: int
    encoded: int
    new_shard: Path | None  # the last shard this lookup wrote, or None when it encoded nothing


class FeatureCache:
    """A folder of feature shards that ``get_or_encode`` reads and appends to."""

    def __init__(self, cache_dir: str | Path, shard_items: int = 1024):
        self.cache_dir = Path(cache_dir)
        self.shard_items = shard_items

    def settings_for(self, backbone: Backbone, max_length: int) -> dict[str, str]:
        """Return the settings that decide a feature vector, besides the item itself."""
        return {"format": CACHE_FORMAT, "max_length": str(max_length), **backbone.settings}

    def folder_for(self, backbone: Backbone, max_length: int) -> Path:
        """Return the shard folder for a backbone and ``max_length``."""
        return self.cache_dir / _settings_digest(self.settings_for(backbone, max_length))[:32]

    def get_or_encode(
        self,
        backbone: Backbone,
        items: Sequence[Item],
        max_length: int,
        batch_size: int = 32,
        threads: int | None = None,
        progress: bool = True,
    ) -> torch.Tensor:
        """Return float32 features [len(items), dim] in input order, encoding only cache misses."""
        features, _ = self.get_or_encode_with_stats(backbone, items, max_length, batch_size, threads, progress)
        return features

    def get_or_encode_with_stats(
        self,
        backbone: Backbone,
        items: Sequence[Item],
        max_length: int,
        batch_size: int = 32,
        threads: int | None = None,
        progress: bool = True,
    ) -> tuple[torch.Tensor, CacheStats]:
        """Like ``get_or_encode``, and also return the hit and encode counts."""
        items = list(items)
        settings = self.settings_for(backbone, max_length)
        settings_digest = _settings_digest(settings)
        folder = self.cache_dir / settings_digest[:32]

        item_keys = [item_key(settings_digest, item) for item in items]
        unique_keys: dict[bytes, int] = {}
        for position, key in enumerate(item_keys):
            unique_keys.setdefault(key, position)

        found_rows, found_features = self._read_shards(folder, settings, backbone.dim, set(unique_keys))
        missing = [key for key in unique_keys if key not in found_rows]
        new_shard = None
        if missing:
            def save(positions: list[int], features: torch.Tensor) -> None:
                nonlocal new_shard
                new_shard = self._write_shard(folder, settings, [missing[p] for p in positions], features)

            encoded = backbone.encode(
                [items[unique_keys[key]] for key in missing],
                max_length=max_length,
                batch_size=batch_size,
                threads=threads,
                progress=progress,
                on_checkpoint=save,
                checkpoint_every=self.shard_items,
            )
            for row, key in enumerate(missing):
                found_rows[key] = found_features.shape[0] + row
            found_features = torch.cat([found_features, encoded])

        rows = torch.tensor([found_rows[key] for key in item_keys], dtype=torch.long)
        features = found_features[rows]
        stats = CacheStats(
            items=len(items),
            unique=len(unique_keys),
            hits=len(unique_keys) - len(missing),
            encoded=len(missing),
            new_shard=new_shard,
        )
        logger.info(
            "feature cache %s: %d items, %d unique, %d hits, %d encoded",
            folder,
            stats.items,
            stats.unique,
            stats.hits,
            stats.encoded,
        )
        return features, stats

    def _read_shards(
        self, folder: Path, settings: dict[str, str], dim: int, wanted: set[bytes]
    ) -> tuple[dict[bytes, int], torch.Tensor]:
        """Return the wanted keys found in the folder's shards, mapped to rows of one tensor."""
        found_rows: dict[bytes, int] = {}
        parts: list[torch.Tensor] = []
        count = 0
        shards = sorted(folder.glob(SHARD_PATTERN)) if folder.is_dir() and wanted else []
        for shard in shards:
            try:
                keys, features = read_shard(shard, settings, dim)
            except FileNotFoundError:
                # Another process quarantined this shard after the listing.
                continue
            except ShardError as error:
                _quarantine(shard, error)
                continue

            key_bytes = keys.numpy().tobytes()
            selected = []
            for row in range(keys.shape[0]):
                key = key_bytes[row * KEY_BYTES : (row + 1) * KEY_BYTES]
                if key in wanted and key not in found_rows:
                    found_rows[key] = count + len(selected)
                    selected.append(row)
            if selected:
                parts.append(features[torch.tensor(selected, dtype=torch.long)])
                count += len(selected)

        if not parts:
            return found_rows, torch.empty((0, dim), dtype=torch.float32)
        return found_rows, torch.cat(parts)

    def _write_shard(
        self, folder: Path, settings: dict[str, str], keys: list[bytes], features: torch.Tensor
    ) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        settings_file = folder / "settings.json"
        if not settings_file.exists():
            write_atomic(settings_file, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())

        key_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8).reshape(len(keys), KEY_BYTES)
        features = features.contiguous().to(torch.float32)
        metadata = {
            "format": CACHE_FORMAT,
            "settings": json.dumps(settings, sort_keys=True),
            "checksum": _shard_checksum(key_tensor, features),
        }
        payload = safetensors.torch.save({"keys": key_tensor, "features": features}, metadata=metadata)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        shard = folder / f"shard-{stamp}-{uuid.uuid4().hex[:12]}.safetensors"
        write_atomic(shard, payload)
        return shard


class ShardError(ValueError):
    """A cache shard that cannot be parsed or does not match its folder's settings."""


def read_shard(shard: Path, settings: dict[str, str], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check one shard, returning its ``keys`` and ``features`` tensors.

    Raises:
        ShardError: the file is not valid safetensors, has the wrong format, settings,
            tensor names, dtypes or shapes, or fails its checksum.
        FileNotFoundError: the file disappeared.
    """
    try:
        with safe_open(str(shard), framework="pt") as handle:
            metadata = handle.metadata() or {}
            names = set(handle.keys())
            if names != {"keys", "features"}:
                raise ShardError(f"{shard}: expected tensors 'keys' and 'features', found {sorted(names)}")
            keys = handle.get_tensor("keys")
            features = handle.get_tensor("features")
    except safetensors.SafetensorError as error:
        raise ShardError(f"{shard}: not a readable safetensors file ({error})") from error

    if metadata.get("format") != CACHE_FORMAT:
        raise ShardError(f"{shard}: format {metadata.get('format')!r}, expected {CACHE_FORMAT!r}")
    if metadata.get("settings") != json.dumps(settings, sort_keys=True):
        raise ShardError(f"{shard}: settings {metadata.get('settings')} do not match this folder")
    if keys.dtype != torch.uint8 or keys.dim() != 2 or keys.shape[1] != KEY_BYTES:
        raise ShardError(f"{shard}: keys have dtype {keys.dtype} and shape {list(keys.shape)}, expected uint8 [n, 32]")
    if features.dtype != torch.float32 or features.dim() != 2 or tuple(features.shape) != (keys.shape[0], dim):
        raise ShardError(
            f"{shard}: features have dtype {features.dtype} and shape {list(features.shape)}, "
            f"expected float32 [{keys.shape[0]}, {dim}]"
        )
    if metadata.get("checksum") != _shard_checksum(keys, features):
        raise ShardError(f"{shard}: checksum mismatch, the file was changed after it was written")
    return keys, features


def item_key(settings_digest: str, item: Item) -> bytes:
    """Return the 32-byte sha256 key of an item under one settings digest."""
    if isinstance(item, str):
        text = json.dumps(["text", item], ensure_ascii=True)
    elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(part, str) for part in item):
        text = json.dumps(["pair", item[0], item[1]], ensure_ascii=True)
    else:
        raise TypeError(
            f"cannot cache an item of type {type(item).__name__}: expected a str or a (prompt, response) pair of str"
        )
    # With ensure_ascii, json.dumps escapes non-ASCII characters and lone surrogates, so this encode cannot fail.
    return hashlib.sha256(f"{settings_digest}\n{text}".encode("ascii")).digest()


def _settings_digest(settings: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _shard_checksum(keys: torch.Tensor, features: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(keys.contiguous().numpy().tobytes())
    digest.update(features.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _quarantine(shard: Path, error: ShardError) -> None:
    target = shard.with_name(shard.name + ".corrupt")
    try:
        os.replace(shard, target)
    except FileNotFoundError:
        return
    logger.warning("feature cache: %s; moved it to %s and will encode its items again", error, target.name)


def write_atomic(path: Path, payload: bytes) -> None:
    """Write bytes to a temporary file next to ``path``, fsync it, then move it into place."""
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with temporary.open("wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
