"""The provider file: what an operator writes, and the clear error for what they get wrong."""

from pathlib import Path

import pytest

from gpuworker.config import ConfigError, Timeouts, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_a_full_comfyui_file_with_its_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("MODAL_KEY", "mk-1")
    config = parse_config("""
provider = "comfyui"
concurrency = 3
price_per_hour = 3.95
name = "modal-1"

[comfyui]
url = "https://me--comfy.modal.run/comfy"
serverless = true
headers = { Authorization = "Bearer ${MODAL_KEY}" }

[timeouts]
cold_start = 120
""")
    assert (config.provider, config.concurrency, config.price_per_hour) == ("comfyui", 3, 3.95)
    assert config.url == "https://me--comfy.modal.run/comfy" and config.serverless
    assert config.headers == {"Authorization": "Bearer mk-1"}
    assert config.timeouts.cold_start == 120 and config.timeouts.request == Timeouts().request
    assert config.options == {"name": "modal-1"}


def test_the_earlier_flat_form_still_reads():
    config = parse_config('comfyui = "http://gpu:8188"\n[headers]\nX-Key = "k"\n')
    assert config.url == "http://gpu:8188" and config.headers == {"X-Key": "k"} and not config.serverless


@pytest.mark.parametrize(
    "text, says",
    [
        ('provider = "modal"', "provider must be one of comfyui, runpod"),
        ("concurrency = 0", "concurrency must be a whole number from 1 to 64"),
        ("[timeouts]\ncold = 5", "[timeouts]: unknown cold"),
        ("[timeouts]\ncold_start = -1", "cold_start must be a number of seconds above 0"),
        ('[comfyui]\nheaders = { A = "${NOT_SET_ANYWHERE}" }', "${NOT_SET_ANYWHERE} is not set in the environment"),
        (
            'provider = "runpod"\n[runpod]\nendpoint = "https://api.runpod.ai/v2/x"',
            "[runpod] needs api_key, object_info",
        ),
        ("provider = ", "not valid TOML"),
    ],
)
def test_a_wrong_file_says_what_is_wrong(text, says):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "worker.toml")
    assert says in str(caught.value) and str(caught.value).startswith("worker.toml")


def test_the_shipped_example_reads(monkeypatch):
    monkeypatch.setenv("SERVERLESS_API_KEY", "k")
    config = parse_config((ROOT / "docker" / "serverless-worker.example.toml").read_text())
    assert config.serverless and config.headers == {"Authorization": "Bearer k"}


def test_the_worker_refuses_an_unknown_key_and_names_the_file(tmp_path, monkeypatch):
    from gpuworker.cli import parse

    monkeypatch.setenv("GPUWORKER_TOKEN", "wt_x")
    path = tmp_path / "w.toml"
    path.write_text('comfyui = "http://c"\ncomfy_url = "typo"\n')
    with pytest.raises(SystemExit):
        parse(["--redis", "redis://x", "--app", "http://a", "--config", str(path)])
    path.write_text('provider = "comfyui"\nconcurrency = 2\n[comfyui]\nurl = "http://c"\n')
    args = parse(["--redis", "redis://x", "--app", "http://a", "--config", str(path)])
    assert args.comfyui == "http://c" and args.config.concurrency == 2


def test_a_literal_secret_and_an_open_file_are_warned_of_at_start(tmp_path, monkeypatch, capsys):
    """The worker still starts (the operator may be trying things), but says so on stderr."""
    path = tmp_path / "runpod.toml"
    path.write_text(
        'provider = "runpod"\n[runpod]\nendpoint = "https://api.runpod.ai/v2/x"\n'
        'api_key = "rpa_literal_key"\nobject_info = "/nope.json"\n'
        '[comfyui.headers]\nAuthorization = "Bearer sk-literal"\nX-Trace = "yes"\n'
    )
    path.chmod(0o644)
    from gpuworker import config as provider_file

    config = provider_file.read(str(path))
    said = "\n".join(config.warnings)
    assert "[runpod] api_key is written in the file" in said and '"${NAME}"' in said
    assert "header Authorization is written in the file" in said and "X-Trace" not in said
    assert "readable by other users of this host" in said and f"chmod 600 {path}" in said
    assert "rpa_literal_key" not in said and "sk-literal" not in said, "a warning never repeats the secret"

    path.chmod(0o600)
    monkeypatch.setenv("RUNPOD_KEY", "rpa_from_env")
    path.write_text(
        path.read_text()
        .replace('"rpa_literal_key"', '"${RUNPOD_KEY}"')
        .replace('"Bearer sk-literal"', '"Bearer ${RUNPOD_KEY}"')
    )
    assert provider_file.read(str(path)).warnings == []

    path.chmod(0o644)
    from gpuworker.cli import parse

    monkeypatch.setenv("GPUWORKER_TOKEN", "wt_x")
    parse(["--redis", "redis://x", "--app", "http://a", "--config", str(path)])
    assert f"gpuworker: warning: {path} is readable by other users" in capsys.readouterr().err
