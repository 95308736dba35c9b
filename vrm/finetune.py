"""Fine-tune mode: a Hugging Face backbone trained jointly with a method's reward head.

Head mode trains a head on frozen, cached features. Here the same head (any registered
method) sits on a backbone that trains too, with LoRA adapters (peft) or fully, so the
loss, the reward and the preference probability are the method's own.

Inputs. A prompt is encoded alone for h_x, and prompt and response are encoded jointly
for h_xy. With a tokenizer that has a chat template, the prompt is a user turn and the
response the assistant turn. h_x then encodes the user turn with the generation prompt. Without
one (BERT-style encoders), the tokenizer's text-pair form is used, as in head mode.
Sequences longer than ``max_length`` lose tokens from the left, after the leading special
tokens, so the end of the response (and of the prompt, for h_x) is always kept; the
number of truncated sequences is counted and logged. Batches are padded on the right.

Pooling is the mean over non-pad tokens for encoders and the last non-pad token for
decoders, read from the attention mask. A tokenizer without a pad token, or whose pad
token is its EOS token, gets a new pad token and the embedding matrix one more row.
Pooled vectors are L2-normalized by default, as in head mode, so head hyperparameters
carry over.

Training uses accelerate: gradient accumulation, bf16 autocast on GPUs that support it,
and several GPUs when started with ``torchrun`` or ``accelerate launch``. Gradient checkpointing is an
option of the config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import json
import logging
import math
from pathlib import Path
import random
import resource
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vrm.errors import UserError
from vrm.methods.registry import Batch, RewardMethod, build_method, get_method

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
CHAT_TEMPLATE_MODES = ("auto", "never")
HEAD_SETTINGS_KEY = "vrm_reward_head"
HEAD_WEIGHTS = "reward_head.safetensors"
PAD_TOKEN = "<|vrm_pad|>"


def _default_lora() -> dict[str, Any]:
    return {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run; the `finetune` section of the workflow config."""

    backbone: str = "minilm"  # "minilm", a model folder or a hub id
    revision: str | None = None
    trust_remote_code: bool = False
    lora: dict[str, Any] | None = field(default_factory=_default_lora)  # None: train every weight
    max_length: int = 256
    pooling: str = "auto"  # "auto": last token for decoders, mean for encoders
    normalize: bool = True
    chat_template: str = "auto"  # "auto": use the tokenizer's template when it has one
    batch_size: int = 8  # pairs per micro-batch
    gradient_accumulation: int = 1
    max_steps: int = 100  # optimizer steps
    learning_rate: float = 1e-4  # backbone weights or LoRA adapters
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    disable_dropout: bool = True  # set the backbone's dropout to 0, as reward-model trainers commonly do
    precision: str = "auto"  # "auto": bf16 on a GPU that supports it, else fp32
    group_by_length: bool = True  # batch pairs of similar length together
    eval_batch_size: int = 32
    # Processes of one job. Above 1, the DAG starts the job with torchrun: one process per
    # GPU (gloo processes on a CPU), each with `batch_size` pairs per step.
    processes: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"finetune.precision = {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise UserError(f"finetune.chat_template = {self.chat_template!r}; allowed: {', '.join(CHAT_TEMPLATE_MODES)}")
        for name in ("max_length", "batch_size", "gradient_accumulation", "max_steps", "eval_batch_size", "processes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"finetune.{name} = {value!r}; it must be a positive integer")
        if self.lora is not None:
            unknown = sorted(set(self.lora) - {"r", "alpha", "dropout", "target_modules"})
            if unknown:
                raise UserError(f"finetune.lora has unknown key(s) {', '.join(unknown)}; "
                                "allowed: r, alpha, dropout, target_modules")
            self.lora = {**_default_lora(), **self.lora}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "FinetuneConfig":
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise UserError(f"finetune: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        return cls(**options)


# Tokenization.


@dataclass
class Encoded:
    """Token ids of one sequence, before padding."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    response_start: int  # first position of the response (len(input_ids) for a prompt alone)
    truncated: bool


class PairTokenizer:
    """Turn prompts and (prompt, response) pairs into token ids, keeping the end at truncation."""

    def __init__(self, tokenizer, max_length: int, chat_template: str = "auto"):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.use_template = chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
        self.uses_token_type_ids = "token_type_ids" in tokenizer.model_input_names and not self.use_template
        self._prompt_ids: dict[str, list[int]] = {}
        special = set(tokenizer.all_special_ids)
        probe = self._raw_prompt("a")
        # Leading special tokens ([CLS], <bos>) stay when a sequence is cut from the left.
        self.lead = 0
        while self.lead < len(probe) and probe[self.lead] in special:
            self.lead += 1
        if max_length <= self.lead + 1:
            raise UserError(f"finetune.max_length = {max_length} leaves no room for text after "
                            f"{self.lead} leading special token(s)")

    def _raw_prompt(self, prompt: str) -> list[int]:
        # Each pair encodes its prompt again to find where the response starts, so keep them.
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = self._tokenize_prompt(prompt)
        return list(self._prompt_ids[prompt])

    def _tokenize_prompt(self, prompt: str) -> list[int]:
        if self.use_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        return list(self.tokenizer(prompt, verbose=False)["input_ids"])

    def _cut(self, ids: list[int], types: list[int] | None, response_start: int) -> Encoded:
        if len(ids) <= self.max_length:
            return Encoded(ids, types, response_start, False)
        dropped = len(ids) - self.max_length
        keep = lambda seq: seq[: self.lead] + seq[self.lead + dropped:]  # noqa: E731
        return Encoded(keep(ids), keep(types) if types is not None else None,
                       max(self.lead, response_start - dropped), True)

    def prompt(self, prompt: str) -> Encoded:
        ids = self._raw_prompt(prompt)
        types = [0] * len(ids) if self.uses_token_type_ids else None
        return self._cut(ids, types, len(ids))

    def pair(self, prompt: str, response: str) -> Encoded:
        if self.use_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            ids = list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
            types = None
        else:
            encoded = self.tokenizer(prompt, response, verbose=False)
            ids = list(encoded["input_ids"])
            types = list(encoded["token_type_ids"]) if self.uses_token_type_ids else None
        # The response starts where the pair stops agreeing with the prompt encoded alone.
        prefix = self._raw_prompt(prompt)
        start = 0
        while start < min(len(prefix), len(ids)) and prefix[start] == ids[start]:
            start += 1
        return self._cut(ids, types, start)


def pad_batch(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad on the right; return input_ids, attention_mask, (token_type_ids) and response_mask."""
    width = max(len(item.input_ids) for item in items)
    count = len(items)
    input_ids = torch.full((count, width), pad_id, dtype=torch.long)
    attention = torch.zeros((count, width), dtype=torch.long)
    response = torch.zeros((count, width), dtype=torch.bool)
    types = torch.zeros((count, width), dtype=torch.long) if items[0].token_type_ids is not None else None
    for row, item in enumerate(items):
        length = len(item.input_ids)
        input_ids[row, :length] = torch.tensor(item.input_ids)
        attention[row, :length] = 1
        response[row, item.response_start:length] = True
        if types is not None:
            types[row, :length] = torch.tensor(item.token_type_ids)
    batch = {"input_ids": input_ids, "attention_mask": attention, "response_mask": response}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


# The model.


def ensure_pad_token(tokenizer, model: nn.Module | None = None) -> bool:
    """Give the tokenizer a pad token distinct from EOS, growing the embeddings; return whether one was added."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if model is not None:
        model.resize_token_embeddings(len(tokenizer))
    return True


class FinetunedRewardModel(nn.Module):
    """A backbone (plain, LoRA-wrapped, or with its LM head) and a method's reward head."""

    def __init__(self, backbone: nn.Module, head: RewardMethod, tokens: PairTokenizer, *, is_decoder: bool,
                 pooling: str, normalize: bool, lm_head: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.tokens = tokens
        self.is_decoder = is_decoder
        self.pooling = pooling
        self.normalize = normalize
        self.lm_head = lm_head

    @property
    def pad_id(self) -> int:
        return int(self.tokens.tokenizer.pad_token_id)

    def _run(self, batch: dict[str, torch.Tensor]):
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            inputs["token_type_ids"] = batch["token_type_ids"]
        if self.lm_head:
            outputs = self.backbone(**inputs, output_hidden_states=True)
            return outputs.hidden_states[-1], outputs.logits
        return self.backbone(**inputs).last_hidden_state, None

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        if self.pooling == "last":
            last = mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, logits = self._run(batch)
        return self.pool(hidden, batch["attention_mask"]), logits

    def forward(self, prompts: dict[str, torch.Tensor], responses: dict[str, torch.Tensor],
                lengths: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the loss on a micro-batch: `responses` contains the chosen rows, then the rejected rows."""
        h_xy, logits = self.encode(responses)
        count = h_xy.shape[0] // 2
        if self.head.reads_prompt:
            h_x, _ = self.encode(prompts)
        else:
            h_x = h_xy.new_zeros((count, h_xy.shape[1]))
        batch: Batch = {"prompt": h_x, "chosen": h_xy[:count], "rejected": h_xy[count:],
                        "chosen_length": lengths[:, 0], "rejected_length": lengths[:, 1]}
        if self.lm_head:
            batch["sft_nll"] = response_nll(logits[:count], responses["input_ids"][:count],
                                            responses["response_mask"][:count])
        return self.head.loss(batch, progress)

    @torch.no_grad()
    def features(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Return h_x and h_xy of each (prompt, response), in input order, on the CPU."""
        device = next(self.parameters()).device
        h_xy = self._encode_all([self.tokens.pair(p, r) for p, r in zip(prompts, responses)], batch_size, device)
        if not self.head.reads_prompt:
            return {"prompt": torch.zeros_like(h_xy), "response": h_xy}
        unique_prompts = list(dict.fromkeys(prompts))
        prompt_rows = {prompt: row for row, prompt in enumerate(unique_prompts)}
        h_x = self._encode_all([self.tokens.prompt(p) for p in unique_prompts], batch_size, device)
        index = torch.tensor([prompt_rows[p] for p in prompts], dtype=torch.long)
        return {"prompt": h_x[index], "response": h_xy}

    def _encode_all(self, items: list[Encoded], batch_size: int, device) -> torch.Tensor:
        order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
        out = torch.empty((len(items), self.head.input_dim), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            padded = {k: v.to(device) for k, v in pad_batch([items[i] for i in rows], self.pad_id).items()}
            pooled, _ = self.encode(padded)
            out[torch.tensor(rows)] = pooled.float().cpu()
        return out

    @torch.no_grad()
    def rewards(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Return the point reward r(x, y) of each pair, in input order."""
        self.eval()
        encoded = self.features(prompts, responses, batch_size)
        return self.head.reward(encoded["prompt"], encoded["response"]).double().numpy()


def response_nll(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood of the response tokens (the SFT term)."""
    targets = input_ids[:, 1:]
    mask = response_mask[:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum().clamp(min=1)


def build_reward_model(method: str, options: dict[str, Any], config: FinetuneConfig) -> FinetunedRewardModel:
    """Load the backbone, give it a pad token and LoRA adapters, and put the method's head on it."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from vrm.backbones.encoder import BackboneNotFoundError, is_decoder_config, resolve_backbone

    cls = get_method(method)
    lm_head = bool(getattr(cls, "needs_lm_head", False))
    try:
        source = resolve_backbone(config.backbone)
    except BackboneNotFoundError as error:
        raise UserError(f"finetune.backbone: {error}") from error
    load = {"trust_remote_code": config.trust_remote_code is True}
    if config.revision and not Path(source).is_dir():
        load["revision"] = config.revision
    model_config = AutoConfig.from_pretrained(source, **load)
    if getattr(model_config, "is_encoder_decoder", False):
        raise UserError(f"finetune.backbone {config.backbone!r} is an encoder-decoder model; use an encoder or a decoder")
    is_decoder = is_decoder_config(model_config)
    if lm_head and not is_decoder:
        raise UserError(f"method {method!r} needs a decoder with an LM head, and finetune.backbone "
                        f"{config.backbone!r} is an encoder; use a causal language model")
    tokenizer = AutoTokenizer.from_pretrained(source, **load)
    tokenizer.padding_side = "right"
    loader = AutoModelForCausalLM if lm_head else AutoModel
    backbone = loader.from_pretrained(source, config=model_config, dtype=torch.float32, **load)
    if ensure_pad_token(tokenizer, backbone):
        log.info("the tokenizer of %s has no pad token distinct from EOS; added %s", config.backbone, PAD_TOKEN)
    if config.disable_dropout:
        for module in backbone.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    if config.gradient_checkpointing:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora["r"], lora_alpha=config.lora["alpha"], lora_dropout=config.lora["dropout"],
                          target_modules=config.lora["target_modules"])
        backbone = get_peft_model(backbone, lora)
    pooling = config.pooling
    if pooling == "auto":
        pooling = "last" if is_decoder else "mean"
    head = build_method(method, int(model_config.hidden_size), options)
    tokens = PairTokenizer(tokenizer, config.max_length, config.chat_template)
    return FinetunedRewardModel(backbone, head, tokens, is_decoder=is_decoder, pooling=pooling,
                                normalize=config.normalize, lm_head=lm_head)


# Training.


@dataclass
class FinetuneResult:
    model: FinetunedRewardModel
    history: list[dict[str, float]]
    report: dict[str, Any]
    is_main_process: bool = True  # False in the other processes of a multi-process run


def _word_counts(texts: Sequence[str]) -> list[float]:
    return [float(len(str(text).split())) for text in texts]


class _PairSet:
    """Tokenized pairs: the prompt, chosen and rejected sequences and word counts."""

    def __init__(self, tokens: PairTokenizer, prompts, chosen, rejected):
        self.prompt = [tokens.prompt(p) for p in prompts]
        self.chosen = [tokens.pair(p, r) for p, r in zip(prompts, chosen)]
        self.rejected = [tokens.pair(p, r) for p, r in zip(prompts, rejected)]
        self.lengths = torch.tensor(list(zip(_word_counts(chosen), _word_counts(rejected))), dtype=torch.float32)
        self.truncated = sum(item.truncated for item in self.prompt + self.chosen + self.rejected)

    def __len__(self) -> int:
        return len(self.prompt)

    def size(self, index: int) -> int:
        return max(len(self.chosen[index].input_ids), len(self.rejected[index].input_ids))

    def collate(self, rows: Sequence[int], pad_id: int, with_prompts: bool = True):
        prompts = pad_batch([self.prompt[i] for i in rows], pad_id) if with_prompts else {}
        responses = pad_batch([self.chosen[i] for i in rows] + [self.rejected[i] for i in rows], pad_id)
        return prompts, responses, self.lengths[list(rows)]


def length_grouped_batches(sizes: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffle, sort each window of 50 batches by size, cut into batches and shuffle the batches.

    Batches then hold pairs of similar length, so less compute goes to padding, and the
    order stays random from epoch to epoch.
    """
    order = torch.randperm(len(sizes), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -sizes[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated CUDA memory on a GPU, else the peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def finetune(method: str, options: dict[str, Any], train: dict[str, list[str]], validation: dict[str, list[str]],
             config: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Train backbone and head on `train` pairs (lists under prompt, chosen, rejected).

    Returns the trained model with the history of the loss and a report: pairs/s, peak
    memory, truncated sequences, and the validation pair accuracy and NLL at the end.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    _seed_everything(config.seed)
    cuda = torch.cuda.is_available()
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    if bf16 and not cuda:
        raise UserError("finetune.precision = 'bf16' needs a GPU; use 'auto' or 'fp32' on a CPU")
    # Every parameter gets a gradient in the methods shipped, but a plugin head may leave
    # some unused, and DistributedDataParallel raises on those unless it searches for them.
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no",
                              gradient_accumulation_steps=config.gradient_accumulation, cpu=not cuda,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    model = build_reward_model(method, options, config)
    pad_id = model.pad_id
    data = _PairSet(model.tokens, train["prompt"], train["chosen"], train["rejected"])
    if len(data) == 0:
        raise UserError(f"{method}: no training pairs to fine-tune on")
    log.info("%s: %d training pairs; %d of %d sequences longer than %d tokens were cut from the left",
             method, len(data), data.truncated, 3 * len(data), config.max_length)

    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    head_params = list(model.head.parameters())
    optimizer = torch.optim.AdamW([
        {"params": backbone_params, "lr": config.learning_rate},
        {"params": head_params, "lr": config.head_learning_rate},
    ], weight_decay=config.weight_decay)
    warmup = int(config.warmup_fraction * config.max_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (config.max_steps - step) / max(1, config.max_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # The scheduler stays outside accelerate, because accelerate steps a prepared scheduler
    # once per process per call. max_steps counts the job's optimizer steps, so it steps once per update.
    model, optimizer = accelerator.prepare(model, optimizer)
    inner: FinetunedRewardModel = accelerator.unwrap_model(model)
    generator = torch.Generator().manual_seed(config.seed)
    sizes = [data.size(i) for i in range(len(data))]

    # Every process draws the same global batches (same generator seed) and takes its share,
    # so `batch_size` is per process, as with a distributed sampler.
    processes, rank = accelerator.num_processes, accelerator.process_index
    global_batch = config.batch_size * processes

    def batches():
        while True:
            if config.group_by_length:
                chunks = length_grouped_batches(sizes, global_batch, generator)
            else:
                order = torch.randperm(len(data), generator=generator).tolist()
                chunks = [order[i:i + global_batch] for i in range(0, len(order), global_batch)]
            for chunk in chunks:
                if len(chunk) >= processes:
                    yield chunk[rank::processes]

    history: list[dict[str, float]] = []
    pairs_seen = 0
    model.train()
    started = time.perf_counter()
    micro_steps = config.max_steps * config.gradient_accumulation
    bar = tqdm(total=config.max_steps, desc=f"fine-tune {method}", unit="step",
               disable=not progress or not accelerator.is_main_process)
    running, running_count = 0.0, 0
    stream = batches()
    for micro in range(micro_steps):
        rows = next(stream)
        prompts, responses, lengths = data.collate(rows, pad_id, inner.head.reads_prompt)
        prompts = {k: v.to(accelerator.device) for k, v in prompts.items()}
        responses = {k: v.to(accelerator.device) for k, v in responses.items()}
        step = micro // config.gradient_accumulation
        with accelerator.accumulate(model):
            loss, terms = model(prompts, responses, lengths.to(accelerator.device), step / config.max_steps)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{method}: fine-tuning loss became {value} at step {step}; "
                                     "lower finetune.learning_rate or finetune.head_learning_rate")
        pairs_seen += len(rows) * processes
        running += value * len(rows)
        running_count += len(rows)
        if accelerator.sync_gradients:
            bar.update(1)
            done = step + 1
            if done % max(1, config.max_steps // 20) == 0 or done == config.max_steps:
                elapsed = time.perf_counter() - started
                record = {"step": done, "train_loss": running / running_count, "pairs_per_second": pairs_seen / elapsed}
                history.append(record)
                bar.set_postfix(loss=f"{record['train_loss']:.4f}", pairs_s=f"{record['pairs_per_second']:.1f}")
                running, running_count = 0.0, 0
    bar.close()
    elapsed = time.perf_counter() - started
    inner.eval()
    report = {
        "pairs_seen": pairs_seen,
        "train_seconds": elapsed,
        "pairs_per_second": pairs_seen / elapsed,
        "peak_memory_bytes": peak_memory_bytes(accelerator.device),
        "device": str(accelerator.device),
        "processes": processes,
        "precision": "bf16" if bf16 else "fp32",
        "train_pairs": len(data),
        "truncated_train_sequences": data.truncated,
        "trainable_backbone_parameters": sum(p.numel() for p in backbone_params),
        "head_parameters": sum(p.numel() for p in head_params),
    }
    if validation and len(validation["prompt"]):
        report.update(validation_metrics(inner, validation, config.eval_batch_size))
        log.info("%s: validation pair accuracy %.3f, pair NLL %.4f on %d pairs", method,
                 report["validation_pair_accuracy"], report["validation_pair_nll"], len(validation["prompt"]))
    return FinetuneResult(inner, history, report, accelerator.is_main_process)


def pair_features(model: FinetunedRewardModel, pairs: dict[str, list[str]], batch_size: int = 32) -> Batch:
    """Encode pairs (lists under prompt, chosen, rejected) into the batch a head's loss and scoring read."""
    model.eval()
    prompts = list(pairs["prompt"])
    count = len(prompts)
    both = model.features(prompts + prompts, list(pairs["chosen"]) + list(pairs["rejected"]), batch_size)
    return {"prompt": both["prompt"][:count], "chosen": both["response"][:count],
            "rejected": both["response"][count:],
            "chosen_length": torch.tensor(_word_counts(pairs["chosen"])),
            "rejected_length": torch.tensor(_word_counts(pairs["rejected"]))}


def validation_metrics(model: FinetunedRewardModel, pairs: dict[str, list[str]], batch_size: int) -> dict[str, float]:
    with torch.no_grad():
        batch = pair_features(model, pairs, batch_size)
        probability = model.head.preference_probability(batch).double().numpy()
    probability = np.clip(probability, 1e-7, 1 - 1e-7)
    return {
        "validation_pair_accuracy": float(np.mean((probability > 0.5) + 0.5 * (probability == 0.5))),
        "validation_pair_nll": float(-np.log(probability).mean()),
    }


# Export: a Hugging Face folder with the head inside.


def export_reward_model(model: FinetunedRewardModel, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` as a Hugging Face folder that `load_reward_model` reads back, head included.

    LoRA adapters are merged into the backbone weights first, so the folder contains plain
    weights any transformers version can load. A causal LM is saved without its LM head,
    which scoring does not use. `config.json` carries the head's settings under
    "vrm_reward_head" and the head's weights are in reward_head.safetensors. The folder is
    written next to its final place and renamed, so a crash leaves no partial export.
    """
    from safetensors.torch import save_file

    from vrm.io import atomic_directory

    backbone = model.backbone
    if hasattr(backbone, "merge_and_unload"):
        backbone = backbone.merge_and_unload()
        model.backbone = backbone
    if model.lm_head:
        backbone = backbone.base_model
    head = model.head
    settings = {
        "method": head.method_name,
        "method_options": asdict(head.config),
        "input_dim": head.input_dim,
        "pooling": model.pooling,
        "normalize": model.normalize,
        "is_decoder": model.is_decoder,
        "max_length": model.tokens.max_length,
        "chat_template": "auto" if model.tokens.use_template else "never",
        **(extra or {}),
    }
    def fill(staging: Path) -> None:
        setattr(backbone.config, HEAD_SETTINGS_KEY, settings)
        backbone.save_pretrained(staging)
        model.tokens.tokenizer.save_pretrained(staging)
        state = {key: value.detach().float().contiguous().cpu() for key, value in head.state_dict().items()}
        save_file(state, str(staging / HEAD_WEIGHTS), metadata={"method": head.method_name})

    return atomic_directory(folder, fill)


def load_reward_model(folder: str | Path, device: str | torch.device = "cpu") -> FinetunedRewardModel:
    """Load a folder written by `export_reward_model`: backbone, tokenizer and head, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not an exported reward model: config.json is missing")
    model_config = AutoConfig.from_pretrained(folder)
    settings = getattr(model_config, HEAD_SETTINGS_KEY, None)
    if not isinstance(settings, dict) or not (folder / HEAD_WEIGHTS).is_file():
        raise UserError(f"{folder} contains a model without a reward head: config.json has no {HEAD_SETTINGS_KEY!r} "
                        f"or {HEAD_WEIGHTS} is missing; export it with vrm-bench")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "right"
    backbone = AutoModel.from_pretrained(folder, config=model_config, dtype=torch.float32)
    head = build_method(settings["method"], settings["input_dim"], settings["method_options"])
    head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
    tokens = PairTokenizer(tokenizer, settings["max_length"], settings["chat_template"])
    model = FinetunedRewardModel(backbone, head, tokens, is_decoder=settings["is_decoder"],
                                 pooling=settings["pooling"], normalize=settings["normalize"], lm_head=False)
    return model.to(device).eval()


def write_training_files(result: FinetuneResult, folder: str | Path, settings: dict[str, Any]) -> None:
    """Write history.csv and training.json (settings and report) beside an exported model."""
    from vrm.io import atomic_write

    folder = Path(folder)
    lines = [",".join(result.history[0].keys())] if result.history else ["step,train_loss,pairs_per_second"]
    lines += [",".join(f"{value:.6g}" for value in row.values()) for row in result.history]
    atomic_write(folder / "history.csv", lambda path: Path(path).write_text("\n".join(lines) + "\n"))
    payload = json.dumps({**settings, "report": result.report}, indent=2, default=str) + "\n"
    atomic_write(folder / "training.json", lambda path: Path(path).write_text(payload))
