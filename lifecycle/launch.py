"""The `lifecycle` program: a tick with nothing due is answered from the idle note (lifecycle.idle, the
standard library only); everything else goes to the command line interface (lifecycle.cli)."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["tick"]:
        from lifecycle import idle

        try:
            if idle.answer(args[1:]):
                sys.exit(0)
        except Exception:  # noqa: BLE001 - any doubt: the full tick decides
            pass
    from lifecycle.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
