"""Fan-out: one session's feed to 1, 10, 100 and 500 WebSocket subscribers on loopback.

    .venv/bin/python -m bench.fanout_bench [--clients 1,10,100,500] [--messages 300] [--rate 20]

The server is the daemon's own FeedServer in a process of its own, publishing `--messages`
utterance-sized messages at `--rate` a second (a busy session sends about 2); the subscribers are
real `websockets` clients in two other processes. Delivery time is from publish to a client's
receipt, over every (message, client); the server's resident memory is read from /proc when the
last message is out. The 1-subscriber row is the baseline.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

PAD = "x" * 400  # about an utterance message's size


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve(port_out, start, messages: int, rate: float, done) -> None:
    from streamer import feed
    from streamer.config import ServerConfig
    from streamer.rooms import Rooms
    from streamer.server import FeedServer

    async def main() -> None:
        log = feed.SessionLog("fanout-bench")
        server = FeedServer(ServerConfig(port=0, client_queue=4096), Rooms.single(log, lambda: {"schema": 1}), web_dir=Path("."))
        await server.start()
        port_out.put(server.port)
        while not start.is_set():
            await asyncio.sleep(0.01)
        for _ in range(messages):
            log.publish("status", {"sent": time.time(), "pad": PAD})
            await asyncio.sleep(1 / rate)
        while not done.is_set():
            await asyncio.sleep(0.05)
        await server.close()

    asyncio.run(main())


def subscribe(port: int, count: int, messages: int, ready, results) -> None:
    from websockets.asyncio.client import connect

    async def one() -> list[float]:
        delays = []
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=60) as ws:
            ready.put(1)
            async for frame in ws:
                message = json.loads(frame)
                if "sent" in message:
                    delays.append(time.time() - message["sent"])
                    if len(delays) == messages:
                        return delays
        return delays

    async def main() -> None:
        got = await asyncio.gather(*(one() for _ in range(count)))
        results.put([d for client in got for d in client])

    asyncio.run(main())


def measure(clients: int, messages: int, rate: float) -> tuple[float, float, float, int]:
    ctx = mp.get_context("spawn")
    port_q, ready, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    start, done = ctx.Event(), ctx.Event()
    server = ctx.Process(target=serve, args=(port_q, start, messages, rate, done))
    server.start()
    port = port_q.get(timeout=60)
    halves = [clients // 2, clients - clients // 2] if clients > 1 else [clients]
    subs = [ctx.Process(target=subscribe, args=(port, n, messages, ready, results)) for n in halves if n]
    for proc in subs:
        proc.start()
    for _ in range(clients):
        ready.get(timeout=120)
    start.set()
    delays = []
    for _ in subs:
        delays += results.get(timeout=messages / rate + 120)
    memory = rss_mb(server.pid)
    done.set()
    for proc in (*subs, server):
        proc.join(30)
    delays.sort()
    p99 = delays[int(0.99 * (len(delays) - 1))]
    return statistics.median(delays) * 1000, p99 * 1000, memory, len(delays)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10,100,500")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="messages published a second")
    args = parser.parse_args()
    print(f"fan-out, {args.messages} messages at {args.rate:g}/s, {os.cpu_count()} CPUs (server and clients share them)")
    print("| subscribers | deliveries | p50 ms | p99 ms | server RSS MB | p99 vs 1 subscriber |")
    print("|---|---|---|---|---|---|")
    base = None
    for clients in [int(c) for c in args.clients.split(",")]:
        p50, p99, memory, count = measure(clients, args.messages, args.rate)
        vs = "baseline" if base is None else f"{p99 / base:.1f}x"
        base = base or p99
        print(f"| {clients} | {count} | {p50:.1f} | {p99:.1f} | {memory:.0f} | {vs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
