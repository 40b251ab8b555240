"""What a worker process is started with: the provider file, the timeouts (every wait named
once) and the settings object that the CLI hands to each part of the worker.

One TOML file per worker (docs/providers.md has the whole format):

    provider = "comfyui"            # or "runpod"
    name = "modal-1"
    concurrency = 2                 # jobs in flight at once
    price_per_hour = 3.95

    [comfyui]
    url = "https://me--comfyui.modal.run/comfy"
    serverless = true
    headers = { Authorization = "Bearer ${MODAL_TOKEN}" }

    [runpod]
    endpoint = "https://api.runpod.ai/v2/abc123"
    api_key = "${RUNPOD_API_KEY}"
    object_info = "object_info.json"

    [timeouts]
    cold_start = 600

`${NAME}` in any string is taken from the environment, so the file itself holds no secret. The
flat keys of earlier files (`comfyui = "URL"` and a `[headers]` table) still work.
"""

import os
import re
import tomllib
from dataclasses import dataclass, field, fields

PROVIDERS = ("comfyui", "runpod")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """The provider file is wrong: the message says where."""


@dataclass
class Timeouts:
    """Every wait of a worker, in seconds, from the shortest to the longest. Each layer gives up
    on its own and says which one it was; none of them fails a job for the provider's fault."""

    connect: float = 10.0  # opening a connection to ComfyUI or the provider's API
    request: float = 30.0  # one HTTP call to ComfyUI or the provider (the GPU's work is not one call)
    socket_reconnect: float = 3.0  # a lost ComfyUI websocket retried before the host counts as down
    poll: float = 1.0  # between status calls to a provider's job API
    cold_start: float = 600.0  # a serverless GPU starting (scaled to zero) before it counts as down
    start_wait: float = 300.0  # the worker waiting for its ComfyUI when it starts
    app_retry: float = 300.0  # the workshop app away (a deploy) before a report is given up
    give_up_after_interrupt: float = 120.0  # a run past its job timeout ignoring the interrupt
    problem_probe: float = 15.0  # between probes of a GPU that refused the worker's credentials
    keep_warm: float = 30.0  # between the requests that keep a serverless GPU from scaling to zero

    @classmethod
    def from_table(cls, table: dict) -> "Timeouts":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"[timeouts]: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = {}
        for key, value in table.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"[timeouts] {key} must be a number of seconds above 0, not {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass
class ProviderConfig:
    provider: str = "comfyui"
    concurrency: int = 1
    price_per_hour: float | None = None
    # comfyui
    url: str = ""
    serverless: bool = False
    headers: dict = field(default_factory=dict)
    # runpod
    endpoint: str = ""
    api_key: str = ""
    object_info: str = ""
    # participants' own models (a GPU host's cache folder that ComfyUI reads)
    model_cache: str = ""
    model_cache_bytes: int = 50 * 1024**3
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Keys the worker's command-line options take (name, app, redis, token, queue …).
    options: dict = field(default_factory=dict)
    # What the worker says at start about the file itself (a literal secret, open permissions).
    warnings: list = field(default_factory=list)


SECRET_HEADER = ("authorization", "key", "token", "secret", "password")


def literal_secrets(raw: dict, source: str) -> list[str]:
    """Secrets written into the file instead of named as ${NAME}: the file then is the secret,
    copied into backups, images and repositories."""
    found = []
    tables = {
        "[runpod] api_key": (raw.get("runpod") or {}).get("api_key") if isinstance(raw.get("runpod"), dict) else None,
        "token": raw.get("token"),
    }
    comfyui: dict = raw["comfyui"] if isinstance(raw.get("comfyui"), dict) else {}
    for name, value in {**(comfyui.get("headers") or {}), **(raw.get("headers") or {})}.items():
        if any(word in str(name).lower() for word in SECRET_HEADER):
            tables[f"header {name}"] = value
    for where, value in tables.items():
        if isinstance(value, str) and value and "${" not in value:
            found.append(
                f"{source}: {where} is written in the file; put it in the environment and write "
                f'"${{NAME}}" there instead (docs/providers.md)'
            )
    return found


def expand(value, where: str):
    """`${NAME}` from the environment; a name that is not set is an error, not an empty secret."""
    if isinstance(value, str):

        def variable(match):
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: ${{{name}}} is not set in the environment")
            return os.environ[name]

        return _VARIABLE.sub(variable, value)
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, where) for v in value]
    return value


def parse_config(text: str, source: str = "config") -> ProviderConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    warnings = literal_secrets(raw, source)
    raw = expand(raw, source)
    config = ProviderConfig(warnings=warnings)
    provider = raw.pop("provider", "comfyui")
    if provider not in PROVIDERS:
        raise ConfigError(f"{source}: provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    config.provider = provider
    concurrency = raw.pop("concurrency", 1)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 64:
        raise ConfigError(f"{source}: concurrency must be a whole number from 1 to 64, not {concurrency!r}")
    config.concurrency = concurrency
    price = raw.pop("price_per_hour", None)
    if price is not None and (not isinstance(price, (int, float)) or price < 0):
        raise ConfigError(f"{source}: price_per_hour must be a number, not {price!r}")
    config.price_per_hour = None if price is None else float(price)
    try:
        config.timeouts = Timeouts.from_table(raw.pop("timeouts", {}))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _comfyui_table(config, raw, source)
    _runpod_table(config, raw.pop("runpod", {}), source)
    _models_table(config, raw.pop("models", {}), source)
    config.options = raw
    return config


def _comfyui_table(config: ProviderConfig, raw: dict, source: str) -> None:
    comfyui = raw.pop("comfyui", {})
    if isinstance(comfyui, str):  # the earlier flat form: comfyui = "URL", [headers]
        comfyui = {"url": comfyui}
    if "headers" in raw:
        comfyui.setdefault("headers", {}).update(raw.pop("headers"))
    if not isinstance(comfyui, dict):
        raise ConfigError(f"{source}: [comfyui] must be a table")
    config.url = str(comfyui.get("url", ""))
    config.serverless = bool(comfyui.get("serverless", False))
    headers = comfyui.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{source}: [comfyui] headers must be a table of strings")
    config.headers = dict(headers)


def _runpod_table(config: ProviderConfig, runpod, source: str) -> None:
    if not isinstance(runpod, dict):
        raise ConfigError(f"{source}: [runpod] must be a table")
    config.endpoint = str(runpod.get("endpoint", "")).rstrip("/")
    config.api_key = str(runpod.get("api_key", ""))
    config.object_info = str(runpod.get("object_info", ""))
    if config.provider == "runpod":
        missing = [k for k in ("endpoint", "api_key", "object_info") if not runpod.get(k)]
        if missing:
            raise ConfigError(f"{source}: [runpod] needs {', '.join(missing)}")


def _models_table(config: ProviderConfig, models, source: str) -> None:
    if not isinstance(models, dict):
        raise ConfigError(f"{source}: [models] must be a table")
    unknown = sorted(set(models) - {"cache_dir", "cache_bytes"})
    if unknown:
        raise ConfigError(f"{source}: [models]: unknown {', '.join(unknown)} (known: cache_bytes, cache_dir)")
    config.model_cache = str(models.get("cache_dir", ""))
    cap = models.get("cache_bytes", config.model_cache_bytes)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
        raise ConfigError(f"{source}: [models] cache_bytes must be a whole number of bytes, not {cap!r}")
    config.model_cache_bytes = cap
    if config.model_cache and (config.provider == "runpod" or config.serverless):
        raise ConfigError(f"{source}: [models] needs a ComfyUI on this host's disk, not a serverless one")


def read(path: str) -> ProviderConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    config = parse_config(text, path)
    if os.stat(path).st_mode & 0o077:
        config.warnings.append(
            f"{path} is readable by other users of this host; a provider file holds or names secrets: chmod 600 {path}"
        )
    return config


@dataclass
class WorkerSettings:
    """Everything one worker process was started with: the command line, the environment and
    the --config file, read once by `gpuworker.cli`, then handed as this object to each part.
    The token stays in this process: it never travels through Redis or the environment."""

    name: str
    app: str
    token: str
    redis: str
    comfyui: str = ""  # ComfyUI's base URL (a RunPod endpoint's, for a RunPod worker)
    queue: str = "gpu"
    headers: dict = field(default_factory=dict)  # sent to ComfyUI (a serverless one's auth)
    burst: bool = False  # exit when the queue is empty (tests, one-off runs)
    config: ProviderConfig = field(default_factory=ProviderConfig)

    @property
    def timeouts(self) -> Timeouts:
        return self.config.timeouts
