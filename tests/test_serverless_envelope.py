"""Envelope validation: every malformed or hostile job input is refused with the field it is about."""

from __future__ import annotations

import base64

import pytest

from backend.serverless.envelope import EnvelopeError, check_path, parse_envelope


def _err(raw: object, **kw: int) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw, **kw)
    return info.value


@pytest.mark.parametrize("raw", [None, [], "GET /health", 3, True])
def test_input_not_an_object(raw: object) -> None:
    err = _err(raw)
    assert err.field == "input"
    assert "JSON object" in err.message


def test_missing_path() -> None:
    assert _err({"method": "GET"}).field == "input.path"


@pytest.mark.parametrize("path", [3, None, ["/health"], {"p": "/x"}])
def test_non_string_path(path: object) -> None:
    err = _err({"path": path})
    assert err.field == "input.path"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "", 7, "GET /x"])
def test_bad_method(method: object) -> None:
    err = _err({"path": "/x", "method": method})
    assert err.field == "input.method"


def test_method_is_case_insensitive_and_defaults_to_post() -> None:
    assert parse_envelope({"path": "/x", "method": "get"}).method == "GET"
    assert parse_envelope({"path": "/x"}).method == "POST"


@pytest.mark.parametrize("body", [[1, 2], "text", 5, True])
def test_body_must_be_an_object(body: object) -> None:
    err = _err({"path": "/profiles", "body": body})
    assert err.field == "input.body"
    assert "JSON object" in err.message


def test_body_with_files_or_on_get() -> None:
    files = {"file": {"content_base64": "QUJD"}}
    assert _err({"path": "/x", "body": {"a": 1}, "files": files}).field == "input.body"
    assert _err({"path": "/x", "method": "GET", "body": {"a": 1}}).field == "input.body"


def test_invalid_base64() -> None:
    for bad in ["!!!!", "QUJ", "QU JD", "QUJD\n" * 2 + "@"]:
        err = _err({"path": "/x", "files": {"file": {"content_base64": bad}}})
        assert err.field == "input.files.file.content_base64", bad


def test_invalid_base64_in_a_list_names_the_item() -> None:
    files = {"file": [{"content_base64": "QUJD"}, {"content_base64": "%%"}]}
    assert _err({"path": "/x", "files": files}).field == "input.files.file[1].content_base64"


def test_oversized_file_refused_before_and_after_decoding() -> None:
    data = base64.b64encode(b"x" * 1000).decode()
    err = _err({"path": "/x", "files": {"file": {"content_base64": data}}}, max_file_bytes=999)
    assert err.field == "input.files.file.content_base64"
    assert "999" in err.message
    ok = parse_envelope(
        {"path": "/x", "files": {"f": {"content_base64": data}}}, max_file_bytes=1000
    )
    assert ok.file_parts()[0][1][1] == b"x" * 1000


def test_files_total_over_limit() -> None:
    part = {"content_base64": base64.b64encode(b"y" * 600).decode()}
    err = _err({"path": "/x", "files": {"a": part, "b": part}}, max_file_bytes=1000)
    assert err.field == "input.files"


def test_file_shape_and_names() -> None:
    assert _err({"path": "/x", "files": {"file": "QUJD"}}).field == "input.files.file"
    bad_name = {"file": {"content_base64": "QUJD", "filename": "../../etc/passwd"}}
    assert _err({"path": "/x", "files": bad_name}).field == "input.files.file.filename"
    crlf = {"file": {"content_base64": "QUJD", "content_type": "audio/wav\r\nX-A: b"}}
    assert _err({"path": "/x", "files": crlf}).field == "input.files.file.content_type"


@pytest.mark.parametrize(
    "params", [{"a": {"b": 1}}, {"a": [{"b": 1}]}, {"a": [[1]]}, {"a": {"nested": {"deep": 1}}}]
)
def test_nested_params(params: dict) -> None:
    err = _err({"path": "/x", "params": params})
    assert err.field == "input.params.a"


def test_nested_form_and_flat_values() -> None:
    assert _err({"path": "/x", "form": {"f": {"x": 1}}}).field == "input.form.f"
    env = parse_envelope({"path": "/x?a=1&b=", "params": {"c": [1, True], "d": None, "e": 1.5}})
    assert env.query_items() == [("a", "1"), ("b", ""), ("c", "1"), ("c", "true"), ("e", "1.5")]


def test_unknown_field() -> None:
    assert _err({"path": "/x", "bdy": {}}).field == "input.bdy"


# Every way a path has been used to leave the local server or the route table.
SSRF_PATHS = [
    "@evil.example/",
    "@127.0.0.1:9/",
    "evil.example/x",
    "//evil.example/x",
    "//127.0.0.1:9/x",
    "http://evil.example/",
    "https://127.0.0.1:9/",
    "HTTP://evil/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:9/",
    "/x@evil.example",
    "/../etc/passwd",
    "/a/../../b",
    "/a/./b",
    "/a/%2e%2e/b",
    "/a/%2E%2e/b",
    "/a/%252e%252e/b",
    "/a/.%2e/b",
    "/a%2f..%2f..%2fb",
    "/%2f%2fevil.example/",
    "/%40evil.example",
    "/a\\..\\b",
    "\\\\evil\\x",
    "/a%5c..%5cb",
    "/health\r\nHost: evil.example",
    "/health\nX: y",
    "/a%0d%0aHost:%20evil",
    "/a%00b",
    "/a\tb",
    "/a b",
    "/a#frag",
    "/é",
    "/a%zz",
    "",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("path", SSRF_PATHS)
def test_hostile_paths_rejected(path: str) -> None:
    err = _err({"path": path, "method": "GET"})
    assert err.field == "input.path"
    with pytest.raises(ValueError):
        check_path(path)


@pytest.mark.parametrize(
    "path", ["/health", "/profiles/abc-123/samples", "/audio/x%20y", "/generate?stream=false", "/"]
)
def test_ordinary_paths_accepted(path: str) -> None:
    assert parse_envelope({"path": path, "method": "GET"}).route_path == path.split("?")[0]


def test_header_smuggling_rejected() -> None:
    for value in ["a\r\nHost: evil", "a\nX-B: c", "a\rb", "a\0b", "a\x01b"]:
        err = _err({"path": "/x", "headers": {"X-A": value}})
        assert err.field == "input.headers.X-A", value
    for name in ["Bad Name", "X-A:b", "X\r\nHost", ""]:
        err = _err({"path": "/x", "headers": {name: "v"}})
        assert err.field == "input.headers"
    assert _err({"path": "/x", "headers": {"X-A": 5}}).field == "input.headers.X-A"


def test_hop_by_hop_and_framing_headers_dropped() -> None:
    env = parse_envelope(
        {
            "path": "/x",
            "headers": {
                "Host": "evil.example",
                "Content-Length": "9999",
                "Transfer-Encoding": "chunked",
                "Connection": "keep-alive, X-Keep",
                "Keep-Alive": "timeout=5",
                "Upgrade": "h2c",
                "TE": "trailers",
                "Proxy-Authorization": "Basic x",
                "Content-Type": "text/plain",
                "X-Keep": "yes",
                "Accept": "audio/wav",
            },
        }
    )
    assert env.headers == {"X-Keep": "yes", "Accept": "audio/wav"}


def test_job_options() -> None:
    env = parse_envelope(
        {"path": "/generate", "body": {"text": "hi"}, "inline_audio": True, "audio_format": "mp3"}
    )
    assert env.is_generate() and env.inline_audio and env.audio_format == "mp3"
    assert _err({"path": "/profiles", "inline_audio": True}).field == "input.inline_audio"
    err = _err({"path": "/generate", "inline_audio": True, "audio_format": "aiff"})
    assert err.field == "input.audio_format"
    assert _err({"path": "/x", "inline_only": "yes"}).field == "input.inline_only"
