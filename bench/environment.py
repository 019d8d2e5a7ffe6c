"""What machine and software a benchmark ran on."""
import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata


def _mount_of(path):
    """``(mount point, device, fs type, options)`` holding ``path``."""
    path = os.path.realpath(path)
    best = ('?', '?', '?', '')
    try:
        with open('/proc/mounts') as f:
            for line in f:
                device, point, fstype, options = line.split()[:4]
                inside = path == point or path.startswith(point.rstrip('/') + '/')
                if inside and len(point) >= len(best[0].replace('?', '')):
                    best = (point, device, fstype, options)
    except OSError:
        pass
    return best


def _first_line(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return '?'


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return 'not installed'


def _git(root):
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root,
                              capture_output=True, text=True, check=True)
        dirty = subprocess.run(['git', 'status', '--porcelain', 'objstore'],
                               cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return '?'
    return head.stdout.strip() + (' + uncommitted objstore/ changes'
                                  if dirty.stdout.strip() else '')


def describe(workdir):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    point, device, fstype, options = _mount_of(workdir)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'python': '%s %s' % (platform.python_implementation(),
                             sys.version.split()[0]),
        'platform': platform.platform(),
        'cpu': _first_line('/proc/cpuinfo', 'model name'),
        'cpu_count': os.cpu_count(),
        'cpu_usable': usable,
        'memory': _first_line('/proc/meminfo', 'MemTotal'),
        'workdir': workdir,
        'filesystem': '%s on %s (%s, mounted at %s)' % (
            fstype, device, ','.join(options.split(',')[:3]), point),
        'zodb': _version('ZODB'),
        'objstore': _git(root),
        'load_average': load_average(),
    }


def load_average():
    try:
        return '%.2f %.2f %.2f' % os.getloadavg()
    except OSError:
        return '?'


def format(env):
    return '\n'.join([
        'objstore storage benchmark, %s' % env['date'],
        'python:     %s on %s' % (env['python'], env['platform']),
        'cpu:        %s; %s CPUs (%s usable); memory %s' % (
            env['cpu'], env['cpu_count'], env['cpu_usable'], env['memory']),
        'temp dir:   %s' % env['workdir'],
        'filesystem: %s' % env['filesystem'],
        'versions:   ZODB %s; objstore at %s' % (env['zodb'], env['objstore']),
        'load avg:   %s at start, %s at end (1/5/15 min; other processes '
        'add noise)' % (env['load_average'], env.get('load_average_end', '?')),
    ])
