#!/usr/bin/env python3
"""Drives the duplicate check's script (src/ingest/dedup/dedup_core.lua + dedup.lua) on a Redis, the
way webhookd's consumer does at full speed: EVENTS new ids of one tenant, BATCH per call, each
with its owner tag. Used by scripts/callgrind-dedup.sh; standard library only (RESP by hand).

    dedup-load.py PORT EVENTS [PER] [BATCH]

Prints how many ids the script took for duplicates and Redis's used_memory, then shuts the
Redis down, so that callgrind writes its counts; fails if any id was taken for a duplicate
(every id is new).
"""
import hashlib
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The keys and arguments webhookd passes (ingest/dedup/mod.rs): a 24 h window, 6 h segments.
TABLE, TABLE_V2, BASE, BASE_V2 = "d:{dedup}:v3:segments", "d:{dedup}:segments", "d:{dedup}:v3:", "d:{dedup}:"
WINDOW_MS, SPAN_MS = 86_400_000, 21_600_000


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def reply(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        return [reply(f) for _ in range(max(int(rest), 0))]
    raise RuntimeError("unexpected reply %r" % line)


def main():
    port, events = int(sys.argv[1]), int(sys.argv[2])
    per = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 48
    src = os.path.join(HERE, "..", "src", "ingest", "dedup")
    script = b"".join(open(os.path.join(src, n), "rb").read() + b"\n" for n in ("dedup_core.lua", "dedup.lua"))
    conn = socket.create_connection(("127.0.0.1", port))
    f = conn.makefile("rb")
    conn.sendall(command("SCRIPT", "LOAD", script))
    sha = reply(f)
    duplicates = 0
    for start in range(0, events, batch):
        args = ["EVALSHA", sha, 2, TABLE, TABLE_V2, WINDOW_MS, SPAN_MS, per, BASE, BASE_V2, 0, 0, 0]
        for i in range(start, min(start + batch, events)):
            args.append(hashlib.sha1(b"webhookd dedup v3\0t\0evt_%d" % i).digest()[:16])
            args.append(int.from_bytes(hashlib.sha1(b"1-%d" % i).digest()[:3], "big"))
        conn.sendall(command(*args))
        duplicates += sum(1 for v in reply(f)[:-1] if v == b"0")
    conn.sendall(command("INFO", "memory"))
    memory = next(l for l in reply(f).split(b"\r\n") if l.startswith(b"used_memory:"))
    print("duplicates %d, %s" % (duplicates, memory.decode()))
    conn.sendall(command("SHUTDOWN", "NOSAVE"))
    # Every id is new: one taken for a duplicate means the run measured something else.
    if duplicates:
        sys.exit("dedup-load: %d new ids were taken for duplicates" % duplicates)


if __name__ == "__main__":
    main()
