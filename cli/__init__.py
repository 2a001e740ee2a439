"""The `gkd` command line: one thin module per command that parses, calls the library, prints.

`main` is the script's entry point. `gkd --version` is answered here, before the command line
is built. It needs none of it, and building it (typer, rich and every command's options) is most
of a start-up. Everything else goes to `gkd_deploy.cli.app.main`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        import gkd_deploy

        print(f"gkd-deploy {gkd_deploy.__version__}")
        return
    from gkd_deploy.cli.app import main as run_app

    run_app(args)
