"""`python -m rnncli` and the `rnn` command. The commands are loaded under a guard: an interrupt
while they load ends as any other does (one line, exit 130), not with a traceback."""

import sys


def run() -> None:
    try:
        from rnncli.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
