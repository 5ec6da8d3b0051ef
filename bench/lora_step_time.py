"""Seconds per step on bases/tiny/model, one thread: 20 SFT steps (batch 16) and 10 GRPO steps (4 prompts x 8), full and LoRA r=16.
Run from the repository root: `nice -n 15 .venv/bin/python bench/lora_step_time.py` (all four cases, one process each), or
`... lora_step_time.py sft|grpo full|lora` for one. Prints one RESULT line (JSON) per case: seconds per step after the
first, the trainable and total parameter counts. Not measured yet (issue #20 item 6: the cores were saturated)."""
import os, sys, json, tempfile, time
os.environ["OMP_NUM_THREADS"] = "1"; os.environ["HF_HUB_OFFLINE"] = "1"
import torch; torch.set_num_threads(1)
if len(sys.argv) < 3:
    import subprocess
    for a in (("sft", "full"), ("sft", "lora"), ("grpo", "full"), ("grpo", "lora")): subprocess.run([sys.executable, __file__, *a], check=True)
    sys.exit()
from jigsaw_forget.models import load_model
from jigsaw_forget.tasks import JigsawTask
from jigsaw_forget.train import run_sft, run_grpo, sft_args, grpo_args, with_lora
task = JigsawTask(rows=2, cols=2, image_size=112, cue=0.6)
sft_data, rl_data = task.sft_rows("train", 320), task.rl_rows("train", 40)
which = sys.argv[1]; lora = dict(r=16) if sys.argv[2] == "lora" else None
m, p = load_model("bases/tiny/model")
n_all = sum(x.numel() for x in m.parameters())
n_train = sum(x.numel() for x in with_lora(load_model("bases/tiny/model")[0], lora).parameters() if x.requires_grad) if lora else n_all
out = tempfile.mkdtemp()
t0 = time.time()
if which == "sft":
    _, log = run_sft(m, p, sft_data, sft_args(out, max_steps=20, batch_size=16, lr=2e-5, logging_steps=1), lora=lora); n = 20
else:
    _, log, _ = run_grpo(m, p, rl_data, task.reward_funcs, grpo_args(out, prompts_per_step=4, num_generations=8, max_steps=10, lr=2e-5,
                         max_completion_length=48), restart_every_epochs=None, lora=lora); n = 10
s = log["seconds"].tolist()
print("RESULT", json.dumps({"stage": which, "lora": bool(lora), "steps": n, "total_s": round(time.time() - t0, 1),
      "s_per_step_after_first": round((s[-1] - s[0]) / (n - 1), 2), "trainable": n_train, "params": n_all}))
