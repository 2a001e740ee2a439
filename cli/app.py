"""The `gkd` application: commands are registered here; errors become one line and exit code 1."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Annotated, Optional

import typer
from rich.text import Text

import gkd_deploy
from gkd_deploy.cli import benchmark, compare, data, demo, evaluate, export, infer, models, train, validate
from gkd_deploy.cli.console import error_console
from gkd_deploy.errors import GKDError
from gkd_deploy.training.config import available_cores

app = typer.Typer(
    name="gkd",
    help="Distil a vision foundation model into an edge-ready ViT segmenter, evaluate it on unseen domains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gkd-deploy {gkd_deploy.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        help="CPU threads for torch (default: the cores this process may use).", min=1)] = None,
) -> None:
    """gkd-deploy: GKD distillation, evaluation and deployment of ViT segmenters."""
    set_torch_threads(threads or available_cores())
    # The terminal shows warnings (all library logs with -v); a run's own log file gets INFO regardless.
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(logging.INFO if verbose else logging.WARNING)


def set_torch_threads(count: int) -> None:
    """torch counts the host's cores; in a container or under taskset that oversubscribes the share.
    Commands import torch only when they need it (the runtime ones never): until then the count waits
    in OMP_NUM_THREADS, which torch reads when it starts."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)


app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("compare")(compare.compare)
app.command("export")(export.export)
app.command("validate")(validate.validate)
app.command("benchmark")(benchmark.benchmark)
app.command("infer")(infer.infer)
app.command("demo")(demo.demo)
app.add_typer(data.app, name="data")


VERBOSE_FLAGS = ("-v", "--verbose")
# Modules of the optional installs, and the install that brings each (the base install is the runtime).
EXTRAS = {"torch": "train", "torchvision": "train", "timm": "train", "safetensors": "train", "scipy": "train",
          "onnx": "train", "onnx_graphsurgeon": "train", "pycocotools": "train", "onnxruntime": "runtime",
          "tensorrt": "tensorrt"}


def missing_install(error: ModuleNotFoundError) -> str | None:
    """The line for a command that needs a package this install lacks, or None for any other module."""
    module = (error.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    if extra == "runtime":
        return ("onnxruntime is not installed: pip install 'gkd-deploy[runtime]' (on a Jetson, NVIDIA's "
                "onnxruntime-gpu wheel for your JetPack)")
    if extra == "tensorrt":
        return "TensorRT is not installed: pip install 'gkd-deploy[tensorrt]' (JetPack's TensorRT on a Jetson)"
    return (f"this command needs {module}, which this install lacks (the base install runs exported models "
            "only): pip install 'gkd-deploy[train]'")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `gkd` script. GKD_DEBUG=1 shows the traceback of a handled error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in VERBOSE_FLAGS for arg in args[1:]):
        # `gkd train ... -v` as well as `gkd -v train ...`: the flag belongs to the root command.
        args = ["--verbose"] + [arg for arg in args if arg not in VERBOSE_FLAGS]
    try:
        app(args=args, prog_name="gkd")
    except GKDError as error:
        _fail(str(error))
    except ModuleNotFoundError as error:
        line = missing_install(error)
        if line is None:
            raise
        _fail(line)


def _fail(message: str) -> None:
    if os.environ.get("GKD_DEBUG"):
        traceback.print_exc()
    error_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
