"""Fail unless every operation of the OpenAPI document got a 2xx answer.

usage: coverage.py OPENAPI_JSON STATS

STATS has one "METHOD /path/template status" line per answer (written by
tessera_auth.after_call). A run whose authenticated calls all fail, or
whose test data never reaches an operation's success, passes every check
of schemathesis; this makes it fail.
"""

import collections
import json
import sys

spec_path, stats_path = sys.argv[1], sys.argv[2]
with open(spec_path, encoding="utf-8") as f:
    spec = json.load(f)
operations = {
    (method.upper(), path)
    for path, item in spec["paths"].items()
    for method in item
    if method in {"get", "put", "post", "delete", "patch"}
}
seen = collections.defaultdict(collections.Counter)
with open(stats_path, encoding="utf-8") as f:
    for line in f:
        method, path, status = line.split()
        seen[(method, path)][int(status)] += 1

missing = []
for op in sorted(operations, key=lambda o: (o[1], o[0])):
    statuses = seen.get(op, collections.Counter())
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    total = sum(statuses.values())
    line = f"  {op[0]:6} {op[1]:28} {ok:5} 2xx of {total:5}  " + " ".join(
        f"{s}x{n}" for s, n in sorted(statuses.items())
    )
    print(line)
    if ok == 0:
        missing.append(op)
if missing:
    print("coverage: no 2xx answer for " + ", ".join(f"{m} {p}" for m, p in missing), file=sys.stderr)
    sys.exit(1)
print(f"coverage: all {len(operations)} operations got a 2xx answer")
