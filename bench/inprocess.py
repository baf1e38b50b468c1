"""In-process time of one sync run (no HTTP server in front): the request through Django's handler,
the run path and one upstream call on loopback. Usage: python bench/inprocess.py [N] [--profile]
Seeds its own SQLite database in /dev/shm and starts the reference upstream from ../shared/bench."""

import cProfile
import gc
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, here)
work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)  # noqa: S108 (RAM disk, private mkdtemp)
os.environ.update(
    DJANGO_SETTINGS_MODULE="config.settings", DEBUG="false", SECURE_SSL_REDIRECT="false",
    ALLOW_PRIVATE_NETWORK_TARGETS="true", LOG_LEVEL="WARNING",
    SECRET_KEY="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789",
    FERNET_KEYS="ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=", CREDENTIALS_API_TOKEN="bench-credentials-token-0123456789abcdef",
    DATABASE_URL=f"sqlite:///{work}/bench.sqlite3",
)
shared = os.environ.get("SHARED_BENCH", os.path.join(here, "..", "shared", "bench"))
with socket.socket() as _probe:  # a free loopback port: other benchmarks may run beside this one
    _probe.bind(("127.0.0.1", 0))
    UPSTREAM_PORT = _probe.getsockname()[1]
upstream = subprocess.Popen([sys.executable, os.path.join(shared, "upstream.py"), str(UPSTREAM_PORT), "k-1"])
try:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    time.sleep(0.3)
    app_id, key = subprocess.check_output(
        [sys.executable, os.path.join(here, "bench", "seed_bench.py"), f"http://127.0.0.1:{UPSTREAM_PORT}/", "k-1"],
        env=os.environ,
    ).decode().split()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 300

    def one():
        response = client.post(f"/apps/{app_id}/v1/runs", {"input": {}}, content_type="application/json")
        assert response.status_code == 200 and b'"completed"' in response.content, response.content

    for _ in range(20):
        one()
    gc.freeze()  # as config/wsgi.py does once the application is loaded
    if os.environ.get("BENCH_CALLGRIND"):
        # Under `valgrind --tool=callgrind --instr-atstart=no`: count instructions of the measured runs only
        # (repeatable whatever else the machine is doing; see bench/instructions.sh).
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
        for _ in range(n):
            one()
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
        print(f"callgrind: {n} runs measured")
    elif "--profile" in sys.argv:
        profiler = cProfile.Profile(time.process_time)  # CPU time: less distorted by a busy machine
        profiler.enable()
        for _ in range(n):
            one()
        profiler.disable()
        stats = pstats.Stats(profiler)
        if os.environ.get("BENCH_PROFILE_OUT"):
            stats.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        stats.sort_stats(sys.argv[-1] if sys.argv[-1] in ("tottime", "cumulative") else "cumulative").print_stats(45)
        if os.environ.get("BENCH_CALLERS"):
            stats.print_callers(os.environ["BENCH_CALLERS"])
    else:
        samples, cpu = [], []
        for _ in range(n):
            start, start_cpu = time.perf_counter(), time.process_time()
            one()
            samples.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        samples.sort()
        print(f"in-process sync run, 1 HTTP node: n={n} p50 {statistics.median(samples):.2f} ms  "
              f"p90 {samples[int(n * 0.9)]:.2f} ms  mean {statistics.mean(samples):.2f} ms; "
              f"CPU of this process per run: median {statistics.median(cpu):.2f} ms")
finally:
    upstream.terminate()
