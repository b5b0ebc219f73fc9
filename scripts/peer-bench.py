#!/usr/bin/env python3
"""The old system's way of generating offers, measured: one request at a time to
llama-cpp-python's OpenAI-compatible server on the same GGUF model.

    # the same chats as the ceiling (inference-worker/examples/ceiling.rs):
    cargo run --release -p inference-worker --example ceiling -- --write-chats 20 > chats.jsonl
    PY="$(scripts/llama-cpp-python.sh | tail -n1)"
    "$PY" scripts/peer-bench.py --model "$(scripts/fetch-model.sh | tail -n1)" chats.jsonl
    "$PY" scripts/peer-bench.py --url http://127.0.0.1:8000 chats.jsonl   # a running server

Each line of the chats file: {"messages": [{"role": ..., "content": ...}, ...], "max_tokens": N,
"temperature": T, "top_p": P, "seed": S} (the sampling fields are optional).

With --model it starts `python -m llama_cpp.server` with the python running this script (so run
it with the venv's python), on a free local port, with as many threads as this machine has cores
(as LlamaGenerator's default), a context of 2048 and a batch of 512, and stops it at the end.
The server's start is not timed. Prints each offer, then offers/min, completion tokens/s and the
total time. Standard library only.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def cores():
    # As Rust's available_parallelism (LlamaConfig's default): the CPUs this process may run on.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("chats", help="a JSON-lines file of chats")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="a GGUF file: start llama-cpp-python's server on it")
    where.add_argument("--url", help="the root of a server already running")
    p.add_argument("-n", type=int, default=None, help="send only the first N chats")
    p.add_argument("--threads", type=int, default=cores(),
                   help="server threads (default: the cores this process may use)")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--n-batch", type=int, default=512)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--quiet", action="store_true", help="do not print the texts")
    return p.parse_args()


def read_chats(path, n):
    chats = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                chat = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"peer-bench: {path}:{number}: not JSON: {e}")
            if not isinstance(chat.get("messages"), list):
                sys.exit(f"peer-bench: {path}:{number}: no messages")
            chats.append(chat)
            if n is not None and len(chats) == n:
                break
    if not chats:
        sys.exit(f"peer-bench: {path} has no chats")
    return chats


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="peer-bench-server-", suffix=".log", delete=False)
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", args.model,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(args.n_ctx),
        "--n_batch", str(args.n_batch),
        "--n_threads", str(args.threads),
        "--n_threads_batch", str(args.threads),
    ]
    print("peer-bench: starting " + " ".join(command), file=sys.stderr)
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            log.seek(0)
            tail = log.read().decode("utf-8", "replace")[-4000:]
            sys.exit(f"peer-bench: the server exited with {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                if r.status == 200:
                    return server, url, log.name
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.kill()
            sys.exit(f"peer-bench: the server did not answer {url}/v1/models in 180 s; log: {log.name}")
        time.sleep(0.2)


def complete(url, chat, timeout):
    body = {
        "messages": chat["messages"],
        "max_tokens": chat.get("max_tokens", 256),
        "temperature": chat.get("temperature", 0.7),
        "top_p": chat.get("top_p", 0.9),
        "seed": chat.get("seed", 42),
        "stream": False,
    }
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"peer-bench: {request.full_url} answered {e.code}: {e.read()[:500]!r}")
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"peer-bench: {request.full_url}: {getattr(e, 'reason', e)}")


def main():
    args = parse_args()
    chats = read_chats(args.chats, args.n)
    server = None
    log = None
    if args.model:
        server, url, log = start_server(args)
    else:
        url = args.url
    try:
        prompt_tokens = completion_tokens = 0
        started = time.monotonic()
        for i, chat in enumerate(chats):
            t0 = time.monotonic()
            answer = complete(url, chat, args.timeout)
            ms = (time.monotonic() - t0) * 1000
            usage = answer.get("usage") or {}
            prompt_tokens += usage.get("prompt_tokens", 0)
            completion_tokens += usage.get("completion_tokens", 0)
            choice = answer["choices"][0]
            cut = ", cut by max_tokens" if choice.get("finish_reason") == "length" else ""
            print(f"#{i}: {usage.get('prompt_tokens', 0)} prompt + "
                  f"{usage.get('completion_tokens', 0)} completion tokens, {ms:.0f} ms{cut}")
            if not args.quiet:
                text = (choice.get("message") or {}).get("content") or ""
                print("    " + text.strip().replace("\n", "\n    "))
        total = time.monotonic() - started
    finally:
        if server is not None:
            server.kill()
            server.wait()
            os.unlink(log)
    threads = f"{args.threads} threads" if args.model else "server's threads"
    print(f"peer (llama-cpp-python, one at a time): {len(chats)} offers, {threads}: "
          f"{prompt_tokens} prompt + {completion_tokens} completion tokens in {total:.2f} s = "
          f"{len(chats) * 60 / total:.1f} offers/min, {completion_tokens / total:.1f} completion tok/s")


if __name__ == "__main__":
    main()
