"""``python -m bench SUBCOMMAND [options]``: run one of objstore's benchmarks."""
import sys

SUBCOMMANDS = {
    'storages': 'bench.storages',
    'db': 'bench.db',
    'immutables': 'bench.immutables',
    'pmem': 'bench.pmem',
    'postgresql': 'bench.postgresql',
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        print('usage: python -m bench {%s} [options]' % ','.join(SUBCOMMANDS),
              file=sys.stderr)
        print('  storages    objstore storages against ZODB\'s, same workload',
              file=sys.stderr)
        print('  db          objstore DB and Connection against ZODB\'s, same '
              'objects', file=sys.stderr)
        print('  immutables  objstore immutables against shoobx.immutable',
              file=sys.stderr)
        print('  pmem        PMemStorage against FileStorages and LMDB',
              file=sys.stderr)
        print('  postgresql  PostgreSQLStorage against RelStorage '
              '(zodbshootout)', file=sys.stderr)
        return 2
    module = __import__(SUBCOMMANDS[argv[0]], fromlist=['main'])
    return module.main(argv[1:])


if __name__ == '__main__':
    sys.exit(main())
