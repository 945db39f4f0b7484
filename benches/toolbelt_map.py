"""One run of requests_toolbelt.threaded.map for examples/compare.rs.

Usage: python3 toolbelt_map.py BASE PATH REQUESTS CONCURRENCY BODY_BYTES
Prints one JSON line: returned, ok, wall_s, cpu_s, peak_rss_kib.
Needs `pip install requests-toolbelt`.
"""
import json
import resource
import sys
import time

from requests_toolbelt import threaded


def main():
    base, path, count, concurrency, body_bytes = sys.argv[1:6]
    count, concurrency, body_bytes = int(count), int(concurrency), int(body_bytes)
    jobs = [{"method": "GET", "url": f"{base}{path}?i={i}"} for i in range(count)]

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    responses, exceptions = threaded.map(jobs, num_processes=concurrency)
    lengths = [len(r.content) for r in responses]
    failed = sum(1 for _ in exceptions)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)

    print(json.dumps({
        "returned": len(lengths) + failed,
        "ok": sum(1 for n in lengths if n == body_bytes),
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "peak_rss_kib": usage.ru_maxrss,
    }))


if __name__ == "__main__":
    main()
