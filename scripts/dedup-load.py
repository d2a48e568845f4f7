#!/usr/bin/env python3
"""Drives the duplicate check on a Redis the way webhookd's consumer does with a backlog:
EVENTS new ids of one tenant, BATCH per check, each with its owner tag. MODE `plain` (the
default, as webhookd checks a full read: src/ingest/dedup/plain.rs) probes the older segments
with HGET in one pipeline, then writes each id with HSETNX (and a hash's expiry once) in a
second, closed by dedup_book.lua; the script checks a batch when the newest segment is full or
near its span's end. MODE `script` checks every batch with the script (dedup_core.lua +
dedup.lua), as earlier builds did. Used by scripts/callgrind-dedup.sh; standard library only
(RESP by hand).

    dedup-load.py PORT EVENTS [PER] [BATCH] [MODE]

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
TABLE, TABLE_V2, BASE, BASE_V2 = "d:{dedup}:v3:segments", "d:{dedup}:segments", b"d:{dedup}:v3:", "d:{dedup}:"
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


class Plain:
    """webhookd's plain check (src/ingest/dedup/plain.rs), one batch at a time."""

    def __init__(self, conn, f, book_sha, per):
        self.conn, self.f, self.sha, self.per = conn, f, book_sha, per
        self.view, self.expiring = None, (None, set())

    def book(self, cur=b"", added=0):
        return [command("EVALSHA", self.sha, 1, TABLE, WINDOW_MS, SPAN_MS, cur, added)]

    def read_view(self, answer):
        now, rest = int(answer[0]), answer[1:]
        segs = sorted((int(rest[i]), [int(x) for x in rest[i + 1].split()]) for i in range(0, len(rest), 2))
        self.view = (now, segs)

    def check(self, ids):
        """The batch's verdicts, or None when the script is to check it."""
        if self.view is None:
            self.conn.sendall(self.book()[0])
            self.read_view(reply(self.f))
        now, segs = self.view
        self.view = None
        if not segs:
            return None
        cur_id, (start, count, n) = segs[-1]
        if now + 1000 >= start + SPAN_MS or count + len(ids) > n * self.per:
            return None
        older = [(BASE + b"%d:" % s, rec[2]) for s, rec in segs[:-1]]
        found = [None] * len(ids)
        if older:
            cmds = [command("HGET", p + b"%d" % (int.from_bytes(fp[:4], "big") % m), fp) for fp, _ in ids for p, m in older]
            self.conn.sendall(b"".join(cmds))
            owners = [reply(self.f) for _ in cmds]
            for i, (_, tag) in enumerate(ids):
                held = [o for o in owners[i * len(older):(i + 1) * len(older)] if o is not None]
                if held:
                    found[i] = held[0] == b"%d" % tag
        if self.expiring[0] != cur_id:
            self.expiring = (cur_id, set())
        cmds, shape = [], []
        prefix = BASE + b"%d:" % cur_id
        for i, (fp, tag) in enumerate(ids):
            if found[i] is None:
                key = prefix + b"%d" % (int.from_bytes(fp[:4], "big") % n)
                cmds.append(command("HSETNX", key, fp, tag))
                expire = key not in self.expiring[1]
                if expire:
                    self.expiring[1].add(key)
                    cmds.append(command("PEXPIREAT", key, start + SPAN_MS + WINDOW_MS, "NX"))
                shape.append((i, expire))
        cmds += self.book(cur_id, len(shape))
        self.conn.sendall(b"".join(cmds))
        answers = [reply(self.f) for _ in cmds]
        self.read_view(answers[-1])
        if self.view[1][-1][0] != cur_id:
            raise RuntimeError("another segment opened: settling is not driven here")
        j = 0
        for i, expire in shape:
            found[i] = answers[j] == b"1"
            j += 2 if expire else 1
        return found


def main():
    port, events = int(sys.argv[1]), int(sys.argv[2])
    per = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 48
    mode = sys.argv[5] if len(sys.argv) > 5 else "plain"
    src = os.path.join(HERE, "..", "src", "ingest", "dedup")
    core = open(os.path.join(src, "dedup_core.lua"), "rb").read() + b"\n"
    conn = socket.create_connection(("127.0.0.1", port))
    f = conn.makefile("rb")
    conn.sendall(command("SCRIPT", "LOAD", core + open(os.path.join(src, "dedup.lua"), "rb").read()))
    sha = reply(f)
    conn.sendall(command("SCRIPT", "LOAD", open(os.path.join(src, "dedup_book.lua"), "rb").read()))
    book = reply(f)
    plain = Plain(conn, f, book, per) if mode == "plain" else None
    duplicates = scripted = 0
    for start in range(0, events, batch):
        ids = [(hashlib.sha1(b"webhookd dedup v3\0t\0evt_%d" % i).digest()[:16],
                int.from_bytes(hashlib.sha1(b"1-%d" % i).digest()[:3], "big"))
               for i in range(start, min(start + batch, events))]
        found = plain.check(ids) if plain else None
        if found is None:
            scripted += 1
            args = ["EVALSHA", sha, 2, TABLE, TABLE_V2, WINDOW_MS, SPAN_MS, per, BASE, BASE_V2, 0, 0, 0]
            for fp, tag in ids:
                args += [fp, tag]
            conn.sendall(command(*args))
            found = [v == b"1" for v in reply(f)[:-1]]
        duplicates += found.count(False)
    conn.sendall(command("INFO", "memory"))
    memory = next(l for l in reply(f).split(b"\r\n") if l.startswith(b"used_memory:"))
    print("duplicates %d, batches by the script %d, %s" % (duplicates, scripted, memory.decode()))
    conn.sendall(command("SHUTDOWN", "NOSAVE"))
    # Every id is new: one taken for a duplicate means the run measured something else.
    if duplicates:
        sys.exit("dedup-load: %d new ids were taken for duplicates" % duplicates)


if __name__ == "__main__":
    main()
