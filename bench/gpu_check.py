"""GPU check: a ~100M-parameter random Llama at sequence_len 2048 on real Alpaca data, through the
factory's own training path: packed vs padded, LoRA and full. Prints real tokens/s, peak GPU memory
and model FLOPs utilisation (MFU) for each, on the card it ran on.

    bash bench/gpu_check.sh            # on a GPU machine (installs carried wheels from .whl/ if any)
    python bench/gpu_check.py --smoke  # the same code path, tiny sizes, on the CPU (for CI-less checking)

MFU = achieved model FLOPs / the card's dense bf16 peak. Model FLOPs per trained token:
6 * params (full) or 4 * frozen params + 6 * trainable params (LoRA: no weight gradients for the
frozen base), plus attention 12 * layers * hidden * mean context (6x for the forward's 2x). The
context of a token is its position in its own sample (causal; a packed row's positions restart per
sample, and padding is not trained), so the mean context comes from the real sample lengths:
sum(n * (n + 1) / 2) / sum(n) over the samples, not seq_len / 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shares its name with the stdlib module: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def data(shared: Path, seq_len: int, n: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(shared / "tokenizers/gpt-neox-20b/20B_tokenizer.json"))
    rows = []
    for p in sorted((shared / "sft_alpaca").glob("*.jsonl")):
        rows += [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    texts = [" ".join(str(v) for v in r.values() if isinstance(v, str)) for r in rows]
    ids = [e.ids + [0] for e in tok.encode_batch(texts)]
    ids = [x for x in ids if len(x) <= seq_len]
    return (ids * (n // len(ids) + 1))[:n]


def model_folder(path: Path, smoke: bool) -> tuple[int, int, int]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2) if smoke else dict(hidden_size=768, intermediate_size=2048,
                                                          num_hidden_layers=10, num_attention_heads=12,
                                                          num_key_value_heads=4)
    config = LlamaConfig(vocab_size=50304, max_position_embeddings=4096, tie_word_embeddings=True, **size)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters()), config.num_hidden_layers, config.hidden_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code path only")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging

    from factory.data.chat import Encoded
    from factory.request.config import parse_request
    from factory.base.progress import Silent
    from factory.train.train import train

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    seq_len = 256 if args.smoke else 2048
    steps = 2 if args.smoke else args.steps
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    params, layers, hidden = model_folder(work / "model", args.smoke)
    samples = [Encoded(x, list(x)) for x in data(args.shared, seq_len, 64 if args.smoke else 20000)]
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.shared / "tokenizers/gpt-neox-20b/20B_tokenizer.json"),
                                  pad_token="<|endoftext|>")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    attn = "flash_attention_2" if _has_flash() else "sdpa"
    context = mean_context([len(x.input_ids) for x in samples])
    print(f"device: {gpu}; torch {torch.__version__}; attention {attn}; model {params / 1e6:.0f}M params, "
          f"seq_len {seq_len}, {steps} steps each; peak bf16 {peak or 'unknown'} TFLOP/s")
    print(f"attention FLOPs at the samples' mean causal context of {context:.0f} tokens "
          f"(seq_len / 2 would be {seq_len // 2})")
    print(f"{'method':6} {'batches':8} {'real tok/s':>11} {'peak GiB':>9} {'MFU':>6}")
    for method in ("lora", "full"):
        for packing in (True, False):
            req = {"base_model": str(work / "model"), "datasets": [{"path": "o/d"}], "sequence_len": seq_len,
                   "sample_packing": packing, "micro_batch_size": 1 if packing else 8, "max_steps": steps,
                   "learning_rate": 1e-4, "save_steps": 10**6, "logging_steps": 10**6, "attn_implementation": attn}
            if method == "lora":
                req.update(adapter="lora", lora_target_linear=True, lora_r=16)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            result = train(parse_request(req), work / "model", tok, samples, [], work / f"{method}-{packing}", Silent())
            tok_s = result.tokens_seen / result.seconds
            trainable = params if method == "full" else _lora_params(work / f"{method}-{packing}")
            per_token = (6 * params if method == "full" else 4 * params + 6 * trainable) + 12 * layers * hidden * context
            mfu = tok_s * per_token / (peak * 1e12) if peak and not args.smoke else None
            mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
            print(f"{method:6} {'packed' if packing else 'padded':8} {tok_s:>11,.0f} {mem:>9.1f} "
                  f"{(f'{mfu:.1%}' if mfu is not None else '-'):>6}", flush=True)


def mean_context(lengths: list[int]) -> float:
    """Mean number of tokens a trained token attends to (itself and those before it in its sample)."""
    return sum(n * (n + 1) / 2 for n in lengths) / sum(lengths)


def _has_flash() -> bool:
    try:
        import flash_attn  # noqa: F401  (only whether it imports)
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _lora_params(run: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(str(run / "adapter" / "adapter_model.safetensors")).values())


if __name__ == "__main__":
    main()
