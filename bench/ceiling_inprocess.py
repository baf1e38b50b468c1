"""The reference ceiling (../shared/bench/ceiling.py: a bare DRF view making the same upstream call and
inserting one row) driven in process like bench/inprocess.py drives the platform, for bench/instructions.sh.
Usage: python bench/ceiling_inprocess.py N UPSTREAM_URL KEY (with CEILING_* set as ceiling.py reads them)."""

import os
import subprocess
import sys

shared = os.environ.get("SHARED_BENCH", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench"))
sys.path.insert(0, shared)
import ceiling  # noqa: E402,F401  (configures Django)
from django.test import Client  # noqa: E402

n = int(sys.argv[1])
client = Client()


def one():
    response = client.post("/", content_type="application/json", data={"input": {}})
    assert response.status_code == 200 and b'"completed"' in response.content, response.content


for _ in range(20):
    one()
subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
for _ in range(n):
    one()
subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
print(f"callgrind: {n} runs measured")
