#!/usr/bin/env python3
"""Writes the reviewer head's training scenarios (benches/model/train/*.json): situation files in
the format of `aether model review FILE`, each labelled with the verdict an operator expects.

Generated from templates with a fixed seed, in wording of their own: the evaluation sets
(benches/model/eval/dev and held-out) were written separately, by another hand, and are never
read here. usage: scripts/bench/make_training.py [OUT_DIR]
"""
import json
import os
import random
import shutil
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "benches", "model", "train")
rng = random.Random(21)

APPS = [("store", "web"), ("store", "cart"), ("media", "encoder"), ("ml", "infer"),
        ("auth", "api"), ("search", "query"), ("chat", "gateway"), ("maps", "tiles"),
        ("mail", "sender"), ("data", "ingest"), ("vid", "transcode"), ("ads", "bidder")]
LANG_OOM = ["java.lang.OutOfMemoryError: GC overhead limit exceeded",
            "fatal error: runtime: out of memory",
            "MemoryError: Unable to allocate 512. MiB for an array",
            "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "Killed process 4121 (node) total-vm:2048000kB, anon-rss:1900000kB (oom)"]
LANG_DEP = ["psycopg2.OperationalError: connection to server at \"10.0.3.4\", port 5432 failed: Connection refused",
            "dial tcp 10.1.0.7:6379: connect: connection refused (redis)",
            "FATAL: password authentication failed for user \"svc_orders\"",
            "Caused by: java.net.ConnectException: Connection refused (kafka-0:9092)",
            "x509: certificate has expired or is not yet valid: current time 2026-12-04T10:00:00Z",
            "OSError: [Errno 28] No space left on device: '/var/cache/app'",
            "error: missing required environment variable API_SIGNING_KEY",
            "invalid configuration: unknown field 'max_conns' in /etc/app/app.yaml line 14"]
OVERLOAD = ["upstream timed out (110: Connection timed out) while reading response header",
            "503 Service Unavailable: request queue full (depth 512)",
            "HikariPool-1 - Connection is not available, request timed out after 30000ms",
            "WARN worker pool saturated: 64/64 busy, 210 queued",
            "context deadline exceeded while waiting for a free worker",
            "ERROR request took 4.2s > slo 1s, queue wait 3.9s"]
HARMLESS = ["DeprecationWarning: the 'pkg_resources' API is deprecated",
            "GET /favicon.ico 404 0.4ms",
            "INFO health check ok, 0 errors in the last minute",
            "WARN config key 'timeout' is deprecated, use 'request_timeout'",
            "INFO served 1200 requests, errors=0",
            "debug: cache miss for key user:8812 (will fetch)"]
HEALTHY = ["INFO request completed status=200 dur=41ms",
           "GET /api/items 200 12ms",
           "INFO processed batch of 500 events in 220ms",
           "INFO heartbeat ok"]
WARMUP = ["INFO warming cache: 35% of 2.1M keys loaded",
          "loading model weights into GPU memory (layer 14/32)",
          "INFO JIT compilation in progress, tier-2 not reached yet",
          "INFO priming connection pool (8/32 open)",
          "building search index shard 3 of 8"]
FREEZE = ["change freeze for {s} until {h}:00 UTC, release night",
          "load test on {s} running till {h}:30 UTC, hands off",
          "do not scale {s} until {h}:00, capacity kept for the batch job",
          "{s}: hold all changes before {h}:00 UTC (vendor incident)"]
SUPPORT = ["newsletter to 2M users at {h}:00 UTC, expect {s} to triple",
           "black friday traffic starting, let {s} grow",
           "partner launch today, {s} will see more calls, scaling is fine"]
AHEAD = ["nightly import hits {s} at {h}:00 UTC, keep capacity",
         "big promo starts {h}:15 UTC, do not shrink {s}"]
JOBNOTE = ["{n} runs the fine-tune job until {h}:00, do not move it",
           "training checkpoint on {n} finishes around {h}:30 UTC, leave it alone"]
PEOPLE = ["ana", "raj", "mo", "lee", "kim", "sam", "uid:1000@n1", "ops-oncall"]


def clock(now_h, now_m=10):
    return f"2026-12-04T{now_h:02d}:{now_m:02d}:00Z"


def nodes(k=3, hot=None):
    out = []
    for i in range(1, k + 1):
        n = {"name": f"n{i}", "state": "ready", "cpu": round(rng.uniform(0.3, 0.7), 2),
             "mem": round(rng.uniform(0.2, 0.6), 2)}
        if hot == i:
            n["gpu_temp"] = float(rng.randint(90, 97))
        elif rng.random() < 0.3:
            n["gpu_temp"] = float(rng.randint(55, 75))
        out.append(n)
    return out


def scale(app, frm, to, per, rule="cpu-high", mn=1, mx=12, calls=None, lat=None):
    name = f"{app[0]}/{app[1]}"
    up = to > frm
    op = ">" if up else "<"
    band = 0.66 if up else 0.54
    why = [f"cpu per instance {per:.2f} {op} target 0.60 (band limit {band:.2f}) for {rng.randint(20, 90)}s"]
    inputs = {"cpu_per_instance": f"{per:.2f}", "target_cpu": "0.60"}
    sl = {"name": name, "desired": frm, "active": frm, "min": mn, "max": mx,
          "cpu_per_instance": per}
    if calls is not None:
        sl.update({"calls_per_s": calls, "latency_ms": lat, "target_latency_ms": 250.0,
                   "error_rate": round(rng.uniform(0.0, 0.02), 3)})
    prop = {"rule": rule, "scale": {"slice": name, "from": frm, "to": to}, "why": why,
            "inputs": inputs}
    return prop, [sl]


def logs(app, lines, n=None):
    name = f"{app[0]}/{app[1]}"
    out = []
    for i, (ago, line) in enumerate(lines):
        out.append({"instance": f"{name}/{rng.randint(0, 2)}", "ago": ago, "line": line})
    return out


def write(i, kind, expect, text_decides, why, doc):
    doc["label"] = {"expect": expect, "text_decides": text_decides, "why": why}
    with open(os.path.join(OUT, f"{i:03d}-{kind}.json"), "w") as f:
        json.dump(doc, f, indent=1)


def up_case():
    app = rng.choice(APPS)
    frm = rng.randint(2, 5)
    to = frm + rng.choice([1, 2])
    per = round(rng.uniform(0.8, 0.98), 2)
    return app, frm, to, per


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    i = 0
    for _ in range(14):  # high load, nothing against it
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        extra = rng.choice([[], logs(app, [("10s", rng.choice(HEALTHY))])])
        write(i, "load-up", "approve", False, "the load needs more copies",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(), "logs": extra}); i += 1
    for _ in range(10):  # low load, scale in
        app = rng.choice(APPS); frm = rng.randint(4, 8); to = frm - 1
        prop, sl = scale(app, frm, to, round(rng.uniform(0.12, 0.4), 2), rule="cpu-low")
        write(i, "load-down", "approve", False, "the copies idle",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes()}); i += 1
    for _ in range(8):  # forecast-only scale-in
        app = rng.choice(APPS); frm = rng.randint(4, 8); to = frm - 2
        prop, sl = scale(app, frm, to, round(rng.uniform(0.5, 0.62), 2), rule="forecast")
        write(i, "forecast-in", "reject", False, "only the forecast wants fewer copies",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes()}); i += 1
    for _ in range(8):  # vetoed the same minutes ago
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        rec = [{"id": rng.randint(5, 90), "scale": {"slice": f"{app[0]}/{app[1]}", "from": frm, "to": to},
                "status": "vetoed", "ago": f"{rng.randint(2, 9)}m", "by": rng.choice(PEOPLE)}]
        write(i, "vetoed", "reject", False, "an operator vetoed the same minutes ago",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(), "recent": rec}); i += 1
    for _ in range(6):  # flapping
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        rec = [{"id": rng.randint(5, 90), "scale": {"slice": f"{app[0]}/{app[1]}", "from": frm + 1, "to": frm},
                "status": "applied", "ago": f"{rng.randint(2, 8)}m", "by": "controller"}]
        write(i, "flap", "reject", False, "it undoes a scale-in minutes old",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(), "recent": rec}); i += 1
    for _ in range(8):  # overshoot: adjust
        app = rng.choice(APPS); frm = rng.randint(2, 4); to = frm + 4
        per = round(rng.uniform(0.68, 0.74), 2)
        prop, sl = scale(app, frm, to, per)
        write(i, "overshoot", "adjust", False, "a smaller step fits a small excess",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes()}); i += 1
    for _ in range(5):  # drain a hot GPU node
        hot = rng.randint(1, 3)
        prop = {"rule": "gpu-hot", "drain": {"node": f"n{hot}"},
                "why": [f"gpu temperature {rng.randint(90, 97)}C > 88C for 60s"]}
        write(i, "gpu-hot", "approve", False, "the GPU overheats",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "nodes": nodes(hot=hot)}); i += 1
    for _ in range(16):  # crash loop on a fault more copies cannot fix
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        fault = rng.choice(LANG_OOM + LANG_DEP)
        lines = [(f"{rng.randint(2, 40)}s", fault) for _ in range(rng.randint(2, 4))]
        ev = [{"ago": f"{rng.randint(5, 50)}s",
               "what": f"{app[0]}/{app[1]}/{rng.randint(0, 2)} exited, restart {rng.randint(3, 9)}"}]
        write(i, "crashloop", "reject", True, "the copies crash on a fault more copies share",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(),
               "logs": logs(app, lines), "events": ev}); i += 1
    for _ in range(16):  # errors from overload: more copies help
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per, rule=rng.choice(["cpu-high", "latency-high"]),
                         calls=round(rng.uniform(200, 900), 2), lat=float(rng.randint(400, 1500)))
        lines = [(f"{rng.randint(1, 30)}s", l) for l in rng.sample(OVERLOAD, rng.randint(2, 3))]
        write(i, "overload", "approve", True, "the errors are the overload itself",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(),
               "logs": logs(app, lines)}); i += 1
    for _ in range(12):  # warm-up during a rollout
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per, rule="latency-high",
                         calls=round(rng.uniform(100, 400), 2), lat=float(rng.randint(300, 700)))
        ev = [{"ago": f"{rng.randint(1, 4)}m", "what": f"rollout of {app[0]}/{app[1]} to version {rng.randint(3, 40)} started"}]
        lines = [(f"{rng.randint(2, 50)}s", l) for l in rng.sample(WARMUP, 2)]
        write(i, "warmup", "reject", True, "a passing warm-up after a deploy",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(),
               "logs": logs(app, lines), "events": ev}); i += 1
    for _ in range(14):  # a note still in force
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        now_h = rng.randint(9, 18)
        note = rng.choice(FREEZE).format(s=f"{app[0]}/{app[1]}", h=now_h + rng.randint(1, 3))
        write(i, "freeze-on", "reject", True, "the operator's hold is still in force",
              {"now": clock(now_h), "proposal": prop, "slices": sl, "nodes": nodes(),
               "notes": [{"ago": f"{rng.randint(1, 3)}h", "by": rng.choice(PEOPLE), "text": note}]}); i += 1
    for _ in range(14):  # a note whose window has passed
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        now_h = rng.randint(12, 21)
        note = rng.choice(FREEZE).format(s=f"{app[0]}/{app[1]}", h=now_h - rng.randint(1, 3))
        write(i, "freeze-off", "approve", True, "the hold ended before now",
              {"now": clock(now_h), "proposal": prop, "slices": sl, "nodes": nodes(),
               "notes": [{"ago": f"{rng.randint(4, 6)}h", "by": rng.choice(PEOPLE), "text": note}]}); i += 1
    for _ in range(10):  # old errors, healthy since
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        lines = [(f"{rng.randint(2, 5)}h", rng.choice(LANG_OOM + LANG_DEP))] + \
                [(f"{rng.randint(1, 40)}s", rng.choice(HEALTHY)) for _ in range(2)]
        write(i, "stale-error", "approve", True, "the errors are hours old",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(),
               "logs": logs(app, lines)}); i += 1
    for _ in range(10):  # harmless noise
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        lines = [(f"{rng.randint(1, 40)}s", l) for l in rng.sample(HARMLESS, 2)]
        write(i, "noise", "approve", True, "the log lines are harmless",
              {"now": clock(rng.randint(8, 20)), "proposal": prop, "slices": sl, "nodes": nodes(),
               "logs": logs(app, lines)}); i += 1
    for _ in range(6):  # a note that supports it
        app, frm, to, per = up_case()
        prop, sl = scale(app, frm, to, per)
        now_h = rng.randint(9, 18)
        note = rng.choice(SUPPORT).format(s=f"{app[0]}/{app[1]}", h=now_h)
        write(i, "note-yes", "approve", True, "the note expects the load",
              {"now": clock(now_h), "proposal": prop, "slices": sl, "nodes": nodes(),
               "notes": [{"ago": f"{rng.randint(1, 5)}h", "by": rng.choice(PEOPLE), "text": note}]}); i += 1
    for _ in range(8):  # scale-in before an announced peak
        app = rng.choice(APPS); frm = rng.randint(4, 8); to = frm - 1
        prop, sl = scale(app, frm, to, round(rng.uniform(0.15, 0.4), 2), rule="cpu-low")
        now_h = rng.randint(9, 18)
        note = rng.choice(AHEAD).format(s=f"{app[0]}/{app[1]}", h=now_h + 1)
        write(i, "peak-ahead", "reject", True, "a peak is announced soon",
              {"now": clock(now_h, 20), "proposal": prop, "slices": sl, "nodes": nodes(),
               "notes": [{"ago": f"{rng.randint(1, 6)}h", "by": rng.choice(PEOPLE), "text": note}]}); i += 1
    for _ in range(6):  # draining a node whose job must finish
        hot = rng.randint(1, 3)
        now_h = rng.randint(9, 18)
        prop = {"rule": "gpu-hot", "drain": {"node": f"n{hot}"},
                "why": [f"gpu temperature {rng.randint(89, 93)}C > 88C for 60s"]}
        note = rng.choice(JOBNOTE).format(n=f"n{hot}", h=now_h + 1)
        write(i, "job-note", "reject", True, "the note asks to leave the node alone",
              {"now": clock(now_h), "proposal": prop, "nodes": nodes(hot=hot),
               "notes": [{"ago": f"{rng.randint(1, 4)}h", "by": rng.choice(PEOPLE), "text": note}]}); i += 1
    print(f"wrote {i} training scenarios to {OUT}")


main()
