"""A pipe stage that dies mid-partition once: the first task to start runs the command, kills
it (SIGKILL) after it has written AFTER records, and fails; every other task, and the retry,
runs the command as it is. Writes how many records the killed command wrote in all.

Usage: kill_once.py MARKER_DIR AFTER REPORT_FILE COMMAND...
"""

import os
import subprocess
import sys
import threading

marker, after, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
command = sys.argv[4:]
try:
    os.mkdir(marker)  # atomic: exactly one attempt of one task gets here first
except FileExistsError:
    os.execv(command[0], command)

child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def feed():
    try:
        for line in sys.stdin.buffer:
            child.stdin.write(line)
        child.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


threading.Thread(target=feed, daemon=True).start()
written = 0
for line in child.stdout:  # to its end: what the command wrote before it died counts
    written += 1
    sys.stdout.buffer.write(line)
    if written == after:
        child.kill()
child.wait()
with open(report, "w") as f:
    f.write(str(written))
sys.stdout.flush()
os._exit(137)
