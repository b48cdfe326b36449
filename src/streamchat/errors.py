"""The one failure type, its kinds, and their messages in Chinese (the default) and English.

A `Failure` travels from where it happens (a route's check, the store, the hub, a provider)
to where it is written (an HTTP error, a stream's `error` event, the stored answer) as this
typed value: its `kind` says what went wrong, its message key and parameters what the person
reads, `detail` what the log gets. Nothing here knows HTTP: statuses and envelope codes are
chosen at the HTTP edge (routes/failures.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Lang = Literal["zh", "en"]

# key -> (Chinese, English); `{name}` placeholders are filled from AppError.params.
MESSAGES: dict[str, tuple[str, str]] = {
    "uid_required": ("用户ID不能为空", "uid is required"),
    "uid_invalid": ("用户ID必须是正整数", "uid must be a positive integer"),
    "message_required": ("消息内容不能为空", "message is required"),
    "message_too_long": (
        "消息内容不能超过 {limit} 个字符",
        "message must be at most {limit} characters",
    ),
    "message_too_many_tokens": (
        "消息太长: {tokens} 个词元, 模型的上下文最多容纳 {limit} 个",
        "message is too long: {tokens} tokens, the model's context holds at most {limit}",
    ),
    "field_invalid": ("参数 {field} 无效: {detail}", "invalid {field}: {detail}"),
    "body_invalid_json": ("请求体不是合法的 JSON", "request body is not valid JSON"),
    "body_not_object": ("请求体必须是 JSON 对象", "request body must be a JSON object"),
    "body_content_type": (
        "Content-Type 必须是 application/json",
        "Content-Type must be application/json",
    ),
    "body_too_large": ("请求体过大", "request body is too large"),
    "body_over_limit": (
        "请求体不能超过 {limit} 字节",
        "request body must be at most {limit} bytes",
    ),
    "headers_too_large": (
        "请求头不能超过 {limit} 字节",
        "request headers must be at most {limit} bytes",
    ),
    "messages_too_many": (
        "消息不能超过 {limit} 条",
        "messages must have at most {limit} items",
    ),
    "messages_too_long": (
        "消息总长度不能超过 {limit} 个字符",
        "messages must be at most {limit} characters together",
    ),
    "max_tokens_too_large": (
        "max_tokens 不能超过 {limit}",
        "max_tokens must be at most {limit}",
    ),
    "model_unknown": ("模型 {model} 不存在", "model {model} does not exist"),
    "stream_not_found": (
        "流 {stream_id} 不存在或已过期",
        "stream {stream_id} not found or expired",
    ),
    "not_found": ("资源不存在", "not found"),
    "method_not_allowed": ("不支持的请求方法", "method not allowed"),
    "internal_error": ("服务器内部错误", "internal server error"),
    # Upstream failures never carry the upstream's text or address: that goes to the log.
    "upstream_unavailable": ("上游模型服务不可用", "upstream model unavailable"),
    "upstream_timeout": ("上游模型服务超时", "upstream model timed out"),
    "upstream_bad_response": ("上游模型服务出错", "upstream model failed"),
    "upstream_rejected": ("模型拒绝了请求: {reason}", "the model refused the request: {reason}"),
    "upstream_rate_limited": (
        "上游模型服务请求过多,请稍后再试",
        "the upstream model is rate limited, retry later",
    ),
    "number_out_of_range": ("参数 {param} 的数值超出范围", "'{param}' is a number out of range"),
    "parameter_unsupported": ("不支持参数 {param}: {reason}", "{param} is not supported: {reason}"),
    "server_busy": ("服务器繁忙,请稍后再试", "server busy, retry later"),
    "database_unavailable": ("数据库暂时不可用,请稍后再试", "database unavailable, retry later"),
    "conversation_not_found": (
        "会话 {conversation_id} 不存在",
        "conversation {conversation_id} not found",
    ),
    "response_not_found": (
        "响应 {response_id} 不存在",
        "Response with id '{response_id}' not found.",
    ),
    "cursor_invalid": ("分页游标无效", "invalid pagination cursor"),
    "key_missing": (
        "缺少 API 密钥: 请在 Authorization 头中使用 Bearer <密钥>",
        "missing API key: send Authorization: Bearer <key>",
    ),
    "key_invalid": ("API 密钥 {prefix}… 无效或已吊销", "API key {prefix}… is invalid or revoked"),
    "uid_forbidden": ("该密钥不能代表其他用户ID", "this key cannot act for another uid"),
    "host_not_allowed": ("不允许的 Host", "this Host is not allowed"),
    "origin_not_allowed": ("不允许跨站请求", "cross-origin requests are not allowed"),
    "auth_off_behind_proxy": (
        "此服务器未开启认证, 不接受经代理转发的请求: 请设置 STREAMCHAT_AUTH=keys "
        "(确要对所有人开放, 请明确设置 STREAMCHAT_AUTH=off)",
        "this server runs without keys and refuses requests that come through a proxy: set "
        "STREAMCHAT_AUTH=keys (or STREAMCHAT_AUTH=off explicitly to serve anyone who reaches "
        "the proxy)",
    ),
    "rate_limited_requests": (
        "请求过于频繁: 每分钟最多 {limit} 次,请稍后再试",
        "too many requests: at most {limit} a minute, retry later",
    ),
    "rate_limited_tokens": (
        "用量超限: 每分钟最多 {limit} 个 token,请稍后再试",
        "too many tokens: at most {limit} a minute, retry later",
    ),
    "rate_limited_streams": (
        "同时进行的回答过多: 最多 {limit} 个",
        "too many answers at once: at most {limit}",
    ),
    "rate_limited_followers": (
        "同时跟随的流过多: 最多 {limit} 个",
        "too many streams followed at once: at most {limit}",
    ),
    "interrupted": (
        "回答被中断: 没有客户端在接收",
        "the answer was interrupted: nobody was listening",
    ),
    "interrupted_shutdown": (
        "回答被中断: 服务器正在关闭",
        "the answer was interrupted: the server is shutting down",
    ),
    "shutting_down": ("服务器正在关闭,请稍后再试", "server shutting down, retry later"),
    "node_lost": (
        "生成回答的服务器节点已停止,回答被中断",
        "the server node generating the answer stopped: the answer was interrupted",
    ),
    "stream_lost": (
        "流服务(Redis)长时间不可达,回答被中断",
        "the stream store (Redis) is out of reach: the answer was interrupted",
    ),
    "stream_unavailable": (
        "流服务(Redis)暂不可用,请稍后再试",
        "the stream store (Redis) is unavailable, retry later",
    ),
}


def translate(key: str, lang: Lang, **params: object) -> str:
    """The message for `key` in `lang`, placeholders filled."""
    zh, en = MESSAGES[key]
    return (en if lang == "en" else zh).format(**params)


def pick_language(accept_language: str | None) -> Lang:
    """Chinese unless the client prefers English (highest q among zh and en)."""
    if not accept_language:
        return "zh"
    best: tuple[float, Lang] = (0.0, "zh")
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("zh", "en"):
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        # Earlier entries win ties, as the header lists preferences in order.
        score = q - position * 1e-6
        if score > best[0]:
            best = (score, "en" if primary == "en" else "zh")
    return best[1]


class Kind(StrEnum):
    """What went wrong. The value is also the `code` of a stream's `error` event."""

    INVALID_REQUEST = "invalid_request"  # the request itself is malformed
    UNSUPPORTED_MEDIA = "unsupported_media_type"
    VALIDATION = "validation_failed"  # a field breaks its rule
    TOO_LONG = "too_long"  # a field is longer than allowed
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"  # no key, or a bad or revoked one
    FORBIDDEN = "forbidden"  # a key (or a page) asking for what is not its own
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RATE_LIMITED = "rate_limit_exceeded"
    BUSY = "server_busy"
    DATABASE = "database_unavailable"
    STREAM_UNAVAILABLE = "stream_unavailable"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_REJECTED = "upstream_rejected"  # the upstream refused what the client sent
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal_error"


class Failure(Exception):
    """Something that failed, as one typed value (see the module's docstring).

    `detail` is for the log; `upstream_status` is the status an upstream answered with;
    `retry_after` (seconds) tells a client when trying again may work.
    """

    kind: Kind = Kind.INTERNAL
    key: str = "internal_error"

    def __init__(
        self,
        kind: Kind | None = None,
        key: str | None = None,
        *,
        detail: str | None = None,
        upstream_status: int | None = None,
        retry_after: int | None = None,
        **params: object,
    ) -> None:
        self.kind = kind or type(self).kind
        self.key = key or type(self).key
        self.detail = detail
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.params = params
        super().__init__(detail or self.key)

    def message(self, lang: Lang) -> str:
        """The message in the client's language."""
        return translate(self.key, lang, **{"detail": self.detail, **self.params})
