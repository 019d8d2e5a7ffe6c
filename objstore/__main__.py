"""``python -m objstore`` and the ``objstore`` command."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog='objstore', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser('demo', help="the README's main job")
    demo.add_argument('path', nargs='?', help='file to write (default: a new temporary file)')
    args = parser.parse_args(argv)
    if args.command == 'demo':
        from objstore import demo as demo_module
        demo_module.run(args.path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
