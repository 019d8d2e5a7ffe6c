"""``python -m objstore`` and the ``objstore`` command."""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog='objstore', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser(
        'demo', help="the README's main job: store, change, reopen, time travel")
    demo.add_argument('path', nargs='?',
                      help='a new file to write (default: in a temporary folder)')
    args = parser.parse_args(argv)
    if args.command == 'demo':
        if args.path and os.path.exists(args.path):
            demo.error('%s exists; the demo writes a new file' % args.path)
        from objstore import demo as demo_module
        demo_module.run(args.path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
