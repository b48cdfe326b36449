"""Our error types and their messages, in Chinese (the default) and English."""

from __future__ import annotations

from typing import Literal

from .schemas import Code

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
    "field_invalid": ("参数 {field} 无效: {detail}", "invalid {field}: {detail}"),
    "body_invalid_json": ("请求体不是合法的 JSON", "request body is not valid JSON"),
    "body_not_object": ("请求体必须是 JSON 对象", "request body must be a JSON object"),
    "body_content_type": (
        "Content-Type 必须是 application/json",
        "Content-Type must be application/json",
    ),
    "body_too_large": ("请求体过大", "request body is too large"),
    "model_unknown": ("模型 {model} 不存在", "model {model} does not exist"),
    "stream_not_found": (
        "流 {stream_id} 不存在或已过期",
        "stream {stream_id} not found or expired",
    ),
    "not_found": ("资源不存在", "not found"),
    "method_not_allowed": ("不支持的请求方法", "method not allowed"),
    "internal_error": ("服务器内部错误", "internal server error"),
    "upstream_unavailable": (
        "上游模型服务不可用: {detail}",
        "upstream model unavailable: {detail}",
    ),
    "upstream_timeout": ("上游模型服务超时: {detail}", "upstream model timed out: {detail}"),
    "upstream_bad_response": ("上游模型服务出错: {detail}", "upstream model failed: {detail}"),
    "server_busy": ("服务器繁忙,请稍后再试", "server busy, retry later"),
    "database_unavailable": ("数据库暂时不可用,请稍后再试", "database unavailable, retry later"),
    "conversation_not_found": (
        "会话 {conversation_id} 不存在",
        "conversation {conversation_id} not found",
    ),
    "cursor_invalid": ("分页游标无效", "invalid pagination cursor"),
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


class AppError(Exception):
    """An error with an HTTP status, an envelope code and a translatable message."""

    def __init__(
        self,
        status: int,
        code: Code,
        key: str,
        headers: dict[str, str] | None = None,
        **params: object,
    ) -> None:
        super().__init__(key)
        self.status = status
        self.code = code
        self.key = key
        self.params = params
        self.headers = headers or {}

    def message(self, lang: Lang) -> str:
        """The message in the client's language."""
        return translate(self.key, lang, **self.params)
