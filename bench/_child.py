"""Writes a file storage and waits to be killed: the crash of the open rows.

``python -m bench._child SYSTEM DIRECTORY N BATCH CRASH_POINT`` fills a new
storage in DIRECTORY with N objects (see
:func:`bench.workload.write_open_file`), prints ``ready`` and a JSON
summary, and sleeps with the storage open
until the parent sends SIGKILL, so the file set is left exactly as a
process crash after its last commit leaves it (no clean close).
"""
import json
import sys
import time

from bench import systems, workload


def main(argv):
    name, directory, n, batch, crash_point = argv
    storage, info = workload.write_open_file(
        systems.get(name), directory, int(n), int(batch), float(crash_point))
    info['objects'] = len(storage)
    sys.stdout.write('ready %s\n' % json.dumps(info))
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == '__main__':
    main(sys.argv[1:])
