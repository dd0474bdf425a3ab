"""Reference CPU throughput of llama.cpp (via llama-cpp-python) on a GGUF model.

Loads MODEL.gguf, then for each run: clears the context, times prompt processing of the whole
PROMPT_FILE (tokenized with special tokens parsed, no BOS added) as one llm.eval() call, then
times greedy decoding of --decode tokens, one llm.eval() per token with argmax over the last
logits. Prints one line per run and, last, the medians on one machine-readable line:

    llama.cpp prompt_tokens=N prefill_tok_s=X decode_tok_s=Y load_s=Z prefill_tok_cpu_s=.. decode_tok_cpu_s=..

(the _cpu_ figures are tokens per second of process CPU time: steadier on a busy machine).

Set up the venv once (compiles llama.cpp for this CPU; under 5 minutes on 2 cores; tested with
llama-cpp-python 0.3.36, Python 3.11):

    python3 -m venv /tmp/llama-venv
    /tmp/llama-venv/bin/pip install cmake ninja
    CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=OFF" \
        /tmp/llama-venv/bin/pip install --no-cache-dir llama-cpp-python

usage: /tmp/llama-venv/bin/python scripts/bench/llama_cpp.py MODEL.gguf PROMPT_FILE \
           [--threads 1] [--decode 32] [--runs 3]
"""

import argparse
import os
import statistics
import sys
import time

# This file is named llama_cpp.py too: drop its own folder from the path so that the import
# below finds the installed package, not this script.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import llama_cpp  # noqa: E402
from llama_cpp import Llama  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("prompt_file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=2048, n_batch=2048, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    load_s = time.perf_counter() - t

    with open(args.prompt_file, encoding="utf-8") as f:
        tokens = llm.tokenize(f.read().encode(), add_bos=False, special=True)
    n_vocab = llm.n_vocab()

    def next_token():
        # Logits of the last evaluated token (the only one with outputs unless logits_all).
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(n_vocab,))
        return int(np.argmax(logits))

    prefill, decode, prefill_cpu, decode_cpu = [], [], [], []
    for run in range(1, args.runs + 1):
        llm.reset()
        t, c = time.perf_counter(), time.process_time()
        llm.eval(tokens)
        tok = next_token()
        p = len(tokens) / (time.perf_counter() - t)
        prefill_cpu.append(len(tokens) / (time.process_time() - c))
        out = [tok]
        t, c = time.perf_counter(), time.process_time()
        for _ in range(args.decode):
            llm.eval([tok])
            tok = next_token()
            out.append(tok)
        d = args.decode / (time.perf_counter() - t)
        decode_cpu.append(args.decode / (time.process_time() - c))
        prefill.append(p)
        decode.append(d)
        text = llm.detokenize(out).decode(errors="replace")
        print(f"run {run}: prompt_tokens={len(tokens)} prefill_tok_s={p:.1f} "
              f"decode_tok_s={d:.1f} output={text!r}", flush=True)

    print(f"llama.cpp prompt_tokens={len(tokens)} prefill_tok_s={statistics.median(prefill):.1f} "
          f"decode_tok_s={statistics.median(decode):.1f} load_s={load_s:.3f} "
          f"prefill_tok_cpu_s={statistics.median(prefill_cpu):.1f} "
          f"decode_tok_cpu_s={statistics.median(decode_cpu):.1f}")


if __name__ == "__main__":
    main()
