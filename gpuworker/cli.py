"""The command line of `python -m gpuworker`: options from arguments, the environment
(GPUWORKER_*) or a TOML config file (--config), where the provider is chosen."""

import argparse
import logging
import os
import socket
import sys

from . import config as provider_file
from . import providers
from .config import ProviderConfig, WorkerSettings

log = logging.getLogger("gpuworker")


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m gpuworker", description="Run workshop jobs on one ComfyUI.")
    parser.add_argument("--config", help="TOML file with any of these options (provider, comfyui, headers …)")
    parser.add_argument("--redis", default=env("GPUWORKER_REDIS"), help="Redis URL of the app host (RQ)")
    parser.add_argument("--app", default=env("GPUWORKER_APP"), help="Base URL of the workshop app")
    # Never on the command line, where `ps` shows it to every user of the GPU host.
    parser.add_argument(
        "--token-file",
        default=env("GPUWORKER_TOKEN_FILE"),
        help="File holding this worker's token (manage.py worker_token); or set GPUWORKER_TOKEN",
    )
    parser.add_argument("--comfyui", default=env("GPUWORKER_COMFYUI"), help="ComfyUI base URL")
    parser.add_argument("--queue", default=env("GPUWORKER_QUEUE", "gpu"))
    parser.add_argument("--name", default=env("GPUWORKER_NAME"), help="Worker name (default: host-port)")
    parser.add_argument(
        "--provider", default=env("GPUWORKER_PROVIDER", "comfyui"), choices=list(provider_file.PROVIDERS)
    )
    parser.add_argument("--concurrency", type=int, default=None, help="Jobs in flight at once (default 1)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent to ComfyUI (serverless auth)")
    parser.add_argument(
        "--app-retry",
        type=float,
        default=float(env("GPUWORKER_APP_RETRY", "300")),
        help="Seconds to keep retrying the app while it restarts",
    )
    parser.add_argument(
        "--comfyui-wait", type=float, default=300.0, help="Seconds to wait for ComfyUI to answer at start"
    )
    parser.add_argument(
        "--model-cache",
        default=env("GPUWORKER_MODEL_CACHE_DIR"),
        help="Folder of participants' own models that this host's ComfyUI reads ([models] cache_dir)",
    )
    parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty")
    return parser


def parse(argv=None) -> WorkerSettings:
    """The settings of this worker process, or the usage and a clear error (exit 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    config = _with_config_file(parser, args) if args.config else ProviderConfig()
    config.provider = args.provider
    config.concurrency = args.concurrency or config.concurrency
    config.model_cache = args.model_cache or config.model_cache
    config.timeouts.app_retry, config.timeouts.start_wait = args.app_retry, args.comfyui_wait
    args.token = getattr(args, "token", None) or os.environ.get("GPUWORKER_TOKEN")
    if args.token_file:
        args.token = _read_token(parser, args.token_file)
    kind = providers.kind_of(config)
    needed = ("redis", "app", "comfyui") if kind.needs_comfyui_url else ("redis", "app")
    missing = [name for name in needed if not getattr(args, name)]
    if not args.token:
        missing.append("token-file (or GPUWORKER_TOKEN)")
    if missing:
        parser.error("missing " + ", ".join("--" + m for m in missing))
    problem = kind.missing(config)
    if problem:
        parser.error(problem)
    args.comfyui = args.comfyui or kind.default_url(config)
    return WorkerSettings(
        name=args.name or f"{socket.gethostname()}-{args.comfyui.rstrip('/').rsplit(':', 1)[-1]}",
        app=args.app,
        token=args.token,
        redis=args.redis,
        comfyui=args.comfyui,
        queue=args.queue,
        headers=_headers(parser, args.header),
        burst=args.burst,
        config=config,
    )


def _with_config_file(parser: argparse.ArgumentParser, args) -> ProviderConfig:
    """The --config file's provider, and its options wherever the command line left the default."""
    try:
        config = provider_file.read(args.config)
    except provider_file.ConfigError as exc:
        parser.error(str(exc))
    for warning in config.warnings:
        print(f"gpuworker: warning: {warning}", file=sys.stderr, flush=True)
    for key, value in config.options.items():
        key = key.replace("-", "_")
        if key in ("header", "config"):
            parser.error(f"{args.config}: {key} belongs in [comfyui]")
        if not hasattr(args, key) and key != "token":
            parser.error(f"{args.config}: unknown key {key!r}")
        if getattr(args, key, None) in (None, "", parser.get_default(key)):
            setattr(args, key, value)
    if args.provider == parser.get_default("provider"):
        args.provider = config.provider
    if not args.comfyui:
        args.comfyui = config.url
    args.header = [f"{k}: {v}" for k, v in config.headers.items()] + args.header
    if args.app_retry == parser.get_default("app_retry"):
        args.app_retry = config.timeouts.app_retry
    if args.comfyui_wait == parser.get_default("comfyui_wait"):
        args.comfyui_wait = config.timeouts.start_wait
    return config


def _read_token(parser: argparse.ArgumentParser, path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        # The path is named only when it cannot be a token: a token given in place of its file's
        # path must not reach the log.
        looks_like_token = os.path.basename(path).startswith("wt_")
        where = "the path given" if looks_like_token else repr(path)
        hint = (
            " --token-file takes the path of a file that holds the token, not the token itself;"
            " or put the token in GPUWORKER_TOKEN."
            if looks_like_token
            else ""
        )
        parser.error(f"cannot read --token-file ({where}): {exc.strerror or exc.__class__.__name__}.{hint}")


def _headers(parser: argparse.ArgumentParser, lines: list[str]) -> dict:
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            parser.error(f"--header must look like 'Name: value', got {line!r}")
        headers[name.strip()] = value.strip()
    return headers
