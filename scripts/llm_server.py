#!/usr/bin/env python3
"""Run llama.cpp's own C++ server (the prebuilt xllamacpp wheel) on one GGUF model.

This is only a launcher: xllamacpp.Server starts llama.cpp's HTTP server
(tools/server) in this process, and everything on the wire is that server's
own: OpenAI-compatible chat completions with streaming, parallel slots with
continuous batching, prompt caching (usage.prompt_tokens_details.cached_tokens),
structured output from response_format json_schema (LLGuidance), /health,
/v1/models, /metrics. No request is rewritten.

The process serves until SIGTERM or SIGINT.

usage: llm_server.py --model PATH --alias NAME --host H --port P
                     [--parallel N] [--ctx-per-slot N] [--threads N]
                     [--threads-batch N] [--cache-ram-mib N]
API key: COUNCIL_LLM_SERVER_API_KEY, when set, is required of every request
except /health.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import xllamacpp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF model file")
    parser.add_argument("--alias", required=True, help="model id the server answers to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4, help="slots: requests decoded together")
    parser.add_argument("--ctx-per-slot", type=int, default=8192, help="context of each slot")
    parser.add_argument("--threads", type=int, default=1, help="threads for generation")
    parser.add_argument("--threads-batch", type=int, default=2, help="threads for prompt processing")
    parser.add_argument("--cache-ram-mib", type=int, default=256, help="host memory for cached prompts")
    args = parser.parse_args()

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.model_alias = [args.alias]  # a set of names; a bare str would become its letters
    p.hostnames = [args.host]
    p.port = args.port
    p.n_parallel = args.parallel
    # One KV pool shared by the slots (kv_unified): a slot may use up to
    # ctx-per-slot positions; the pool holds that much for every slot.
    p.kv_unified = True
    p.n_ctx = args.parallel * args.ctx_per_slot
    p.cont_batching = True
    p.cache_prompt = True
    p.cache_ram_mib = args.cache_ram_mib
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads_batch
    p.endpoint_metrics = True
    p.endpoint_slots = True
    key = os.environ.get("COUNCIL_LLM_SERVER_API_KEY", "")
    if key:
        p.api_keys = [key]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(p)  # loads the model, then listens
    print(f"llm_server: {args.alias} at {server.listening_address}", flush=True)
    stop.wait()
    # The server's threads end with the process; no graceful drain is needed
    # for a test server, and destructors of a running server may block.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
