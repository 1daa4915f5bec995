"""A cluster node in its own process, for the tests: opens the node a config
file describes, prints 'ready', and serves until its stdin closes (then
closes the storage) or it is killed."""

import sys

import protobase_storage as pb


def main() -> None:
    storage = pb.open(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()
    storage.close()


if __name__ == "__main__":
    main()
