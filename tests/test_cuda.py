"""The CUDA paths, checked against the CPU: they skip cleanly where there is no CUDA GPU (as in CI).

What only a GPU exercises: the fast attention kernels chosen on CUDA, bf16 autocast in training
and evaluation, fused AdamW on CUDA, torch.compile with the Inductor GPU backend, checkpoints moved
between devices, and sampling with a CUDA generator.

Tolerances (stated here, not in tests/tolerances.py, because they are about the GPU's arithmetic):
- float32 on CUDA vs float32 on the CPU, with TF32 switched off: 1e-4 relative to scale (different
  kernels sum in a different order; cuBLAS and the flash/efficient attention kernels differ from
  the CPU's by ~1e-6, so 1e-4 leaves room and still catches a wrong weight or mask at 1e-2 or more).
- bf16 autocast vs float32: 3e-2 of the loss (bf16 keeps 8 bits of mantissa: ~4e-3 relative per
  product, partly averaging out over the sums).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from minilm import GPT, GPTConfig
from minilm.checkpoint import load_model
from minilm.data import REPO_ROOT
from minilm.lstm import LSTMLM, LSTMConfig
from minilm.sampling import generate, generate_without_cache
from minilm.training import TrainConfig, train
from tests.tolerances import max_error

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FLOAT32_ON_CUDA = 1e-4
BF16_LOSS = 3e-2


@pytest.fixture(autouse=True)
def no_tf32():
    """Exact float32 matmuls on the GPU for the comparisons (training switches TF32 on)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def small_gpt(**overrides) -> GPT:
    settings = dict(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64, dropout=0.0)
    settings.update(overrides)
    torch.manual_seed(0)
    return GPT(GPTConfig(**settings)).eval()


def batch(B=3, T=64, V=256, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=generator), torch.randint(0, V, (B, T), generator=generator)


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
@pytest.mark.parametrize("kernels", ["fused", "readable"])
def test_gpt_forward_and_gradients_on_cuda_equal_the_cpu(pos_emb, kernels):
    """Same weights, same batch: logits, loss and every gradient agree between CPU and CUDA."""
    cpu = small_gpt(pos_emb=pos_emb, kernels=kernels).train()
    gpu = small_gpt(pos_emb=pos_emb, kernels=kernels).train().cuda()
    x, y = batch()
    cpu_logits, cpu_loss = cpu(x, y)
    gpu_logits, gpu_loss = gpu(x.cuda(), y.cuda())
    cpu_loss.backward()
    gpu_loss.backward()
    assert max_error(gpu_logits, cpu_logits) < FLOAT32_ON_CUDA
    assert max_error(gpu_loss, cpu_loss) < FLOAT32_ON_CUDA
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        assert max_error(p_gpu.grad, p_cpu.grad) < FLOAT32_ON_CUDA, name


def test_padding_mask_on_cuda_equals_the_cpu():
    cpu, gpu = small_gpt(), small_gpt().cuda()
    x, _ = batch(B=2, T=16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, :5] = False  # left padding in row 0
    mask[1, 12:] = False  # right padding in row 1
    assert max_error(gpu(x.cuda(), attention_mask=mask.cuda())[0], cpu(x, attention_mask=mask)[0]) < FLOAT32_ON_CUDA


def test_bf16_autocast_loss_is_close_to_float32():
    model = small_gpt().cuda()
    x, y = (t.cuda() for t in batch())
    with torch.no_grad():
        _, exact = model(x, y)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, approx = model(x, y)
    assert logits.dtype == torch.bfloat16 and approx.dtype == torch.float32
    assert abs(float(approx) - float(exact)) < BF16_LOSS * float(exact)


def test_lstm_on_cuda_equals_the_cpu():
    torch.manual_seed(0)
    cpu = LSTMLM(LSTMConfig(vocab_size=256, n_layer=2, n_embd=32, n_hidden=48, dropout=0.0))
    gpu = LSTMLM(LSTMConfig(vocab_size=256, n_layer=2, n_embd=32, n_hidden=48, dropout=0.0))
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x, y = batch(B=2, T=20)
    cpu_logits, cpu_loss = cpu(x, y)[:2]
    gpu_logits, gpu_loss = gpu(x.cuda(), y.cuda())[:2]
    assert max_error(gpu_logits, cpu_logits) < FLOAT32_ON_CUDA
    assert max_error(gpu_loss, cpu_loss) < FLOAT32_ON_CUDA


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
def test_kv_cache_generation_on_cuda_picks_the_full_forward_tokens(pos_emb):
    """Greedy decoding past block_size: the decoder (KV cache, re-fill policy) on the GPU gives the
    tokens of a full forward over the same context at every step."""
    model = small_gpt(block_size=16, pos_emb=pos_emb).double().cuda()
    prompt = torch.tensor([[1, 2, 3, 4], [9, 8, 7, 6]], device="cuda")
    cached = generate(model, prompt, 40, greedy=True)
    full = generate_without_cache(model, prompt, 40, greedy=True, policy="refill")
    assert cached.device.type == "cuda"
    assert torch.equal(cached, full)


def test_seeded_sampling_on_cuda_repeats():
    model = small_gpt().cuda()
    draws = [generate(model, [10, 20, 30], 50, temperature=0.9, top_k=40, top_p=0.95,
                      generator=torch.Generator(device="cuda").manual_seed(seed)) for seed in (5, 5, 6)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def tiny_cuda_config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(data="shakespeare", block_size=32, batch_size=8, steps=60, lr=3e-3, min_lr=3e-4,
                    warmup_steps=5, eval_interval=30, eval_windows=32, eval_batch_size=16, device="cuda",
                    progress=False, verbose=False, out_dir=str(tmp_path / "run"),
                    model_args=dict(n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_on_cuda_learns_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    """bf16 autocast + fused AdamW on CUDA: the loss falls; the checkpoint's float32 weights load
    on the CPU and give the GPU model's float32 logits."""
    result = train(tiny_cuda_config(tmp_path))
    torch.backends.cuda.matmul.allow_tf32 = False  # train() switched TF32 on; compare in full float32
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert last < first - 0.5, (first, last)
    assert next(result.model.parameters()).device.type == "cuda"
    cpu_model, _, checkpoint = load_model(tmp_path / "run" / "ckpt.pt", "cpu")
    assert checkpoint["step"] == 60
    x, _ = batch(B=2, T=32)
    result.model.eval()
    with torch.no_grad():
        assert max_error(result.model(x.cuda())[0], cpu_model(x)[0]) < FLOAT32_ON_CUDA


def test_compiled_training_on_cuda_follows_eager(tmp_path):
    """torch.compile (Inductor, GPU) trains to the same losses as eager within bf16 noise."""
    eager = train(tiny_cuda_config(tmp_path, steps=20, eval_interval=10, out_dir=""))
    compiled = train(tiny_cuda_config(tmp_path, steps=20, eval_interval=10, out_dir="", compile=True))
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert abs(a["val_loss"] - b["val_loss"]) < BF16_LOSS * a["val_loss"], (a, b)


def test_train_and_sample_scripts_run_on_cuda(tmp_path):
    out = tmp_path / "cli"
    common = dict(capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    trained = subprocess.run([sys.executable, "train.py", "--preset", "ci-tiny", "--steps", "30", "--eval-interval",
                              "15", "--device", "cuda", "--no-progress", "--out", str(out)], **common)
    assert trained.returncode == 0, trained.stderr
    argv = [sys.executable, "sample.py", "--ckpt", str(out / "ckpt.pt"), "--device", "cuda", "--prompt", "ROMEO:",
            "--max-new-tokens", "40", "--seed", "3", "--no-stream"]
    first, second = subprocess.run(argv, **common), subprocess.run(argv, **common)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("ROMEO:")
    assert len(first.stdout) > len("ROMEO:") + 10
