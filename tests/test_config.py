from __future__ import annotations

import math
import pickle

import pytest

from wrenn import AsyncWrennClient, Secret, WrennClient, WrennConfigurationError
from wrenn._config import ClientConfig, check_seconds, normalize_base_url, resolve_proxy_domain

KEY = "wrn_0123456789abcdef0123456789abcdef"


def resolve(environ: dict[str, str] | None = None, /, **kw: object) -> ClientConfig:
    args: dict[str, object] = {
        "api_key": None,
        "token": None,
        "base_url": None,
        "proxy_domain": None,
        "timeout": 30.0,
        "connect_timeout": 10.0,
        "max_retries": 3,
    }
    args.update(kw)
    return ClientConfig.resolve(environ=environ or {}, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.wrenn.dev/api", "https://app.wrenn.dev/api"),
        ("https://app.wrenn.dev/api/", "https://app.wrenn.dev/api"),
        ("https://app.wrenn.dev/api/v1", "https://app.wrenn.dev/api"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/v1/", "http://[::1]:9000"),
    ],
)
def test_base_url_forms(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["app.wrenn.dev", "ftp://x", "", "http://"])
def test_bad_base_url(bad: str) -> None:
    with pytest.raises(WrennConfigurationError):
        normalize_base_url(bad)


def test_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(WrennConfigurationError) as info:
        normalize_base_url("https://user:hunter2secret@app.wrenn.dev/api")
    assert "hunter2secret" not in str(info.value)


@pytest.mark.parametrize(
    ("base", "explicit", "expected"),
    [
        ("https://app.wrenn.dev/api", None, "wrenn.dev"),
        ("http://127.0.0.1:8080", None, "localhost:8080"),
        ("http://localhost:8080", None, "localhost:8080"),
        ("http://10.0.0.5:8080", None, "10.0.0.5:8080"),
        ("https://example.com/api", None, "example.com"),
        ("https://app.wrenn.dev/api", "proxy.local:9000", "proxy.local:9000"),
    ],
)
def test_proxy_domain(base: str, explicit: str | None, expected: str) -> None:
    assert resolve_proxy_domain(base, explicit) == expected


def test_environment_is_read() -> None:
    cfg = resolve(
        {
            "WRENN_API_KEY": KEY,
            "WRENN_BASE_URL": "http://localhost:1234",
            "WRENN_PROXY_DOMAIN": "p.example",
        }
    )
    assert cfg.base_url == "http://localhost:1234"
    assert cfg.proxy_domain == "p.example"
    assert cfg.auth_headers() == {"X-API-Key": KEY}


def test_arguments_beat_environment() -> None:
    cfg = resolve({"WRENN_API_KEY": "wrn_env"}, api_key=KEY, base_url="http://h:1")
    assert cfg.auth_headers() == {"X-API-Key": KEY}


def test_default_base_url() -> None:
    assert resolve({}).base_url == "https://app.wrenn.dev/api"


def test_token_gives_bearer_and_api_key_wins_when_both() -> None:
    assert resolve({"WRENN_TOKEN": "jwt.abc"}).auth_headers() == {"Authorization": "Bearer jwt.abc"}
    assert resolve({"WRENN_TOKEN": "jwt.abc", "WRENN_API_KEY": KEY}).auth_headers() == {
        "X-API-Key": KEY
    }


def test_missing_credentials_name_the_variable() -> None:
    cfg = resolve({})
    with pytest.raises(WrennConfigurationError, match="WRENN_API_KEY"):
        cfg.auth_headers()
    with pytest.raises(WrennConfigurationError, match="WRENN_TOKEN"):
        resolve({"WRENN_API_KEY": KEY}).bearer_headers()


@pytest.mark.parametrize("bad", [f" {KEY}", f"{KEY}\n", "wrn_a\r\nX-Evil: 1"])
def test_credentials_with_whitespace_are_refused_without_echo(bad: str) -> None:
    with pytest.raises(WrennConfigurationError) as info:
        resolve(api_key=bad)
    assert bad.strip() not in str(info.value)


@pytest.mark.parametrize("bad", [f"{KEY}\u00e9", f"{KEY[:10]}\u200b{KEY[10:]}", f"{KEY}\x00"])
def test_credentials_a_header_cannot_carry_are_refused_without_echo(bad: str) -> None:
    # before: a UnicodeEncodeError at the first call (not a WrennError), whose repr held
    # the whole key
    for creds in ({"api_key": bad}, {"token": bad}):
        with pytest.raises(WrennConfigurationError) as info:
            resolve(**creds)
        assert KEY[5:15] not in str(info.value) + repr(info.value)


@pytest.mark.parametrize(
    ("name", "value"), [("timeout", 0), ("timeout", -1.0), ("max_retries", -1)]
)
def test_bad_numbers(name: str, value: float) -> None:
    with pytest.raises(WrennConfigurationError, match=name):
        resolve(api_key=KEY, **{name: value})


def test_secret_never_shows() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret}"
    assert secret.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_client_and_config_reprs_hide_credentials() -> None:
    client = AsyncWrennClient(api_key=KEY, token="jwt.secret.value", base_url="http://h:1")
    for text in (repr(client), repr(client.config), str(client.config)):
        assert KEY not in text
        assert "jwt.secret.value" not in text
    assert KEY not in str(client.http.headers)


@pytest.mark.parametrize("value", [1e9, 1e300, math.inf])
def test_a_timeout_of_a_billion_seconds_or_more_is_no_limit(value: float) -> None:
    # no socket or time_t can wait that long: such a value is infinite, which every
    # blocking path maps to "no timeout" (it used to overflow in settimeout)
    assert check_seconds(value) == math.inf
    assert check_seconds(None) == math.inf
    config = resolve(api_key=KEY, timeout=value, connect_timeout=value)
    assert config.timeout == config.connect_timeout == math.inf
    assert check_seconds(999_999_999.0) == 999_999_999.0


@pytest.mark.parametrize("cls", [AsyncWrennClient, WrennClient])
def test_connect_timeout_none_is_no_limit(cls: type[AsyncWrennClient | WrennClient]) -> None:
    # before: TypeError ('>' not supported between NoneType and int)
    client = cls(api_key=KEY, base_url="http://h:1", connect_timeout=None)
    try:
        assert client.config.connect_timeout == math.inf
    finally:
        if isinstance(client, WrennClient):
            client.close()
    assert resolve(api_key=KEY, connect_timeout=None).connect_timeout == math.inf


class Phased:
    """The shape of ``httpx.Timeout`` (the official SDK's client timeout)."""

    def __init__(self, connect: object, read: object, write: object, pool: object) -> None:
        self.connect, self.read, self.write, self.pool = connect, read, write, pool


@pytest.mark.parametrize(
    ("phases", "timeout", "connect"),
    [
        ((2.0, 5.0, 5.0, 5.0), 5.0, 2.0),
        ((2.0, 5.0, 9.0, 1.0), 9.0, 2.0),  # the longest of the phases a call goes through
        ((None, 5.0, 5.0, 5.0), 5.0, math.inf),
        ((3.0, None, 5.0, 5.0), math.inf, 3.0),  # None in any: no limit
        ((None, None, None, None), math.inf, math.inf),
    ],
)
def test_a_timeout_in_phases_is_split_into_ours(
    phases: tuple[float | None, ...], timeout: float, connect: float
) -> None:
    config = resolve(api_key=KEY, timeout=Phased(*phases), connect_timeout=10.0)
    assert (config.timeout, config.connect_timeout) == (timeout, connect)
    httpx2 = pytest.importorskip("httpx2")
    real = resolve(api_key=KEY, timeout=httpx2.Timeout(phases[1], connect=phases[0]))
    assert real.connect_timeout == connect


@pytest.mark.parametrize("bad", [-1.0, 0, "wrn_secret_in_the_wrong_place", True, math.nan])
def test_a_bad_phase_is_named_and_not_echoed(bad: object) -> None:
    with pytest.raises(WrennConfigurationError, match=r"timeout\.read must be") as caught:
        resolve(api_key=KEY, timeout=Phased(1.0, bad, 1.0, 1.0))
    assert "secret" not in str(caught.value)


ODD_OPTIONS: list[dict[str, object]] = [
    {"base_url": "http://localhost:99999"},
    {"base_url": "http://localhost:abc"},
    {"base_url": "http://[::1"},
    {"base_url": "http://127.0.0.1:0"},
    {"base_url": 123},
    {"base_url": b"http://h:1"},
    {"api_key": 123},
    {"api_key": KEY.encode()},
    {"token": 123},
    {"token": b"jwt.secret.value"},
    {"proxy_domain": 123},
    {"timeout": "5"},
    {"timeout": True},
    {"connect_timeout": "1"},
    {"connect_timeout": False},
    {"max_retries": None},
    {"max_retries": "3"},
    {"max_retries": 1.5},
    {"max_retries": True},
    {"ping_interval": "x"},
    {"ping_interval": True},
    {"ping_timeout": None},
    {"ping_timeout": "1"},
    {"binary_frames": "no"},
    {"binary_frames": 0},
]


@pytest.mark.parametrize("options", ODD_OPTIONS, ids=repr)
@pytest.mark.parametrize("cls", [AsyncWrennClient, WrennClient])
def test_odd_constructor_options_are_a_configuration_error(
    cls: type[AsyncWrennClient | WrennClient], options: dict[str, object]
) -> None:
    # before: TypeError, AttributeError or ValueError from deep inside, or (timeout=True,
    # max_retries=1.5, binary_frames="no") taken as something else without a word
    args: dict[str, object] = {"api_key": "wrn_cafe0123456789", "base_url": "http://h:1"}
    args.update(options)
    with pytest.raises(WrennConfigurationError) as info:
        cls(**args)  # type: ignore[arg-type]
    name = next(iter(options))
    text = str(info.value)
    assert name.replace("_", " ") in text.replace("_", " ").lower()
    for secret in ("cafe0123456789", KEY[4:], "jwt.secret.value"):
        assert secret not in text + repr(info.value)


@pytest.mark.parametrize(
    "url", ["http://user:hunter2secret@h:99999/api", "http://user:hunter2secret@[::1/api"]
)
def test_an_unparsable_base_url_is_refused_without_echoing_credentials(url: str) -> None:
    with pytest.raises(WrennConfigurationError) as info:
        normalize_base_url(url)
    assert "hunter2secret" not in str(info.value)
    assert "WRENN_BASE_URL" in str(info.value)


def test_a_bad_base_url_in_the_environment_is_a_configuration_error() -> None:
    with pytest.raises(WrennConfigurationError, match="WRENN_BASE_URL"):
        resolve({"WRENN_BASE_URL": "http://localhost:99999"}, api_key=KEY)


def test_binary_frames_takes_a_real_bool() -> None:
    assert resolve(api_key=KEY, binary_frames=False).binary_frames is False
    assert resolve(api_key=KEY, binary_frames=True).binary_frames is True
    assert resolve({"WRENN_BINARY_FRAMES": "no"}, api_key=KEY).binary_frames is False
