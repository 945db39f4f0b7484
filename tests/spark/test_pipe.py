"""parfetch as a Spark pipe stage: every line's record exactly once, also across a killed task.

Run by tests/spark/run.sh, which builds nothing: it is given the release command in PARFETCH.
"""

import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pyspark.sql import SparkSession

PARFETCH = os.environ["PARFETCH"]
HERE = os.path.dirname(os.path.abspath(__file__))
SPECS = 20_000
PARTITIONS = 8
CONCURRENCY = 8  # per task: two task slots on two cores
# Requests a command may have sent beyond the records it wrote (tests/cli.rs: resend_bound).
SENT_AHEAD_BOUND = 3 * CONCURRENCY + 1


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.hits = collections.Counter()

    def handle_error(self, request, client_address):
        # The killed command's connections reset mid-request: expected here, and not a failure.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)

    def reset(self):
        with self.lock:
            self.hits = collections.Counter()

    def repeats(self):
        with self.lock:
            return sum(n - 1 for n in self.hits.values() if n > 1), len(self.hits)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with self.server.lock:
            self.server.hits[self.path] += 1
        status = 404 if self.path.startswith("/missing/") else 200
        body = f"{status} {self.path}".encode()
        reason = "OK" if status == 200 else "Not Found"
        # Head and body in one write.
        self.wfile.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )

    def log_message(self, *args):
        pass


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def spark():
    spark = (
        SparkSession.builder.master("local[2,4]")
        .appName("parfetch-pipe")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


def make_lines(base, refused):
    """The input: SPECS specs with ids, and blank and comment lines among them.

    Returns the lines and, per id, what its record must say."""
    lines, expected = [], {}
    for i in range(SPECS):
        if i % 1500 == 0:
            lines.append("")
        if i % 2100 == 0:
            lines.append("# a comment")
        kind = i % 10
        if i % 997 == 0:
            spec = f'{{"url": 5, "id": {i}}}'  # malformed, id still readable
            expected[i] = ("malformed", None)
        elif i % 1999 == 0:
            spec = f"not json {i} http://user:s3cret@x/"  # malformed, no id
            expected[i] = ("malformed", None)
        elif kind == 9:
            spec = json.dumps({"url": f"{refused}/r/{i}", "id": i})
            expected[i] = ("connect", None)
        elif kind >= 7:
            spec = json.dumps({"url": f"{base}/missing/{i}", "id": i})
            expected[i] = (None, 404)
        else:
            spec = json.dumps({"url": f"{base}/ok/{i}", "id": {"row": i}})
            expected[i] = (None, 200)
        lines.append(spec)
    return lines, expected


@pytest.fixture(scope="module")
def data(server):
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return make_lines(base, f"http://127.0.0.1:{closed_port()}")


def id_of(spec_line):
    """The id a line's record must carry (None where the line is no JSON)."""
    try:
        spec = json.loads(spec_line)
    except ValueError:
        return None
    return spec.get("id")


def row_of(id_value, spec_line):
    if isinstance(id_value, dict):
        return id_value["row"]
    if isinstance(id_value, int):
        return id_value
    return int(spec_line.split()[2])  # "not json {i} ..."


def check_records(spark, rdd, records_by_partition, expected):
    """Exactly one record per line that is not blank or a comment, matched by (partition,
    line), with its id, and the status or error kind its spec calls for."""
    lines = rdd.mapPartitionsWithIndex(
        lambda p, it: [(p, n, line) for n, line in enumerate(it, start=1)]
    ).collect()
    wanted = {
        (p, n): line for p, n, line in lines if line.strip() and not line.startswith("#")
    }
    got = collections.Counter()
    for p, record in records_by_partition:
        key = (p, record["line"])
        got[key] += 1
        line = wanted[key]
        assert record.get("id") == id_of(line), (record, line)
        kind, status = expected[row_of(id_of(line), line)]
        if status is not None:
            assert record["ok"] is True and record["status"] == status, record
        else:
            assert record["ok"] is False and record["error"]["kind"] == kind, record
        assert "s3cret" not in json.dumps(record), record
    assert set(got) == set(wanted), (len(got), len(wanted))
    assert max(got.values()) == 1, [k for k, n in got.items() if n > 1][:5]
    return len(got)


def command(*extra):
    return [PARFETCH, "--allow-failures", "--quiet", "-j", str(CONCURRENCY), *extra]


def test_pipe_stage_every_line_once_in_order(spark, server, data):
    lines, expected = data
    rdd = spark.sparkContext.parallelize(lines, PARTITIONS)
    server.reset()
    started = time.monotonic()
    out = (
        rdd.pipe(" ".join(command("--keep-order")), checkCode=True)
        .mapPartitionsWithIndex(lambda p, it: [(p, json.loads(r)) for r in it])
        .collect()
    )
    pipe_seconds = time.monotonic() - started
    n = check_records(spark, rdd, out, expected)
    by_partition = collections.defaultdict(list)
    for p, record in out:
        by_partition[p].append(record["line"])
    for p, numbers in by_partition.items():
        assert numbers == sorted(numbers), f"partition {p} out of order"
    repeats, distinct = server.repeats()
    assert repeats == 0, repeats

    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"parfetch-spark-{os.getpid()}.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    started = time.monotonic()
    direct = subprocess.run(command("-o", "/dev/null", path), check=True)
    direct_seconds = time.monotonic() - started
    os.remove(path)
    assert direct.returncode == 0
    print(
        f"\n{n} records; pipe stage ({PARTITIONS} partitions, local[2,4], -j {CONCURRENCY} per task):"
        f" {pipe_seconds:.2f} s; the command directly on the whole input (-j {CONCURRENCY}):"
        f" {direct_seconds:.2f} s"
    )


def test_a_killed_task_is_retried_and_each_line_still_has_one_record(
    spark, server, data, tmp_path
):
    lines, expected = data
    rdd = spark.sparkContext.parallelize(lines, PARTITIONS)
    marker, report = tmp_path / "killed", tmp_path / "written"
    after = 300
    wrapper = [sys.executable, os.path.join(HERE, "kill_once.py"), str(marker), str(after), str(report)]
    server.reset()
    print("\none task is killed on purpose: Spark logs its failure, then retries it")
    out = (
        rdd.pipe(" ".join(wrapper + command()), checkCode=True)
        .mapPartitionsWithIndex(lambda p, it: [(p, json.loads(r)) for r in it])
        .collect()
    )
    assert marker.exists(), "no task was killed"
    check_records(spark, rdd, out, expected)
    written = int(report.read_text())
    repeats, _ = server.repeats()
    print(
        f"\nkilled after {after} records: the command had written {written}; requests sent twice:"
        f" {repeats} (bound: {written} + {SENT_AHEAD_BOUND})"
    )
    assert after <= written < SPECS // PARTITIONS, written
    assert 0 < repeats <= written + SENT_AHEAD_BOUND, (repeats, written)


def test_map_partitions_with_a_subprocess(spark, server, data):
    lines, expected = data
    rdd = spark.sparkContext.parallelize(lines, PARTITIONS)
    argv = command("--keep-order")

    def fetch(partition, rows):
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def feed():
            for row in rows:
                proc.stdin.write(row.encode() + b"\n")
            proc.stdin.close()

        # Fed from a thread: a process that is written to and read from by one thread
        # deadlocks once both pipes are full.
        feeder = threading.Thread(target=feed)
        feeder.start()
        for record in proc.stdout:
            yield partition, json.loads(record)
        feeder.join()
        if proc.wait() != 0:
            raise RuntimeError(f"parfetch exited {proc.returncode}")

    server.reset()
    out = rdd.mapPartitionsWithIndex(fetch).collect()
    check_records(spark, rdd, out, expected)
    assert server.repeats()[0] == 0
