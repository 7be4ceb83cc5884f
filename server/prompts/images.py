"""Image inputs of chat messages: ``image_url`` content parts -> Pillow images.

Accepted: ``data:image/...;base64,...`` URIs, ``file://`` URLs and absolute paths of files on the
server. Remote (http/https) URLs are never fetched: the server works offline.
"""
from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..api.errors import bad_request

__all__ = ["has_images"]

IMAGE_PART_TYPES = ("image_url", "input_image", "image")


def has_images(messages) -> bool:
    return any(isinstance(m.content, list) and any(p.get("type") in IMAGE_PART_TYPES for p in m.content)
               for m in messages)


def _url_of(part: dict, param: str) -> str:
    value = part.get("image_url", part.get("image"))
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request('an image part needs {"type": "image_url", "image_url": {"url": "data:..." | '
                          '"file:///path"}}', param)
    return url


def _bytes_of(url: str, param: str) -> bytes:
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise bad_request("image data URIs must be base64: data:image/png;base64,...", param)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(f"the image data URI is not valid base64: {exc}", param) from exc
    scheme = urlparse(url).scheme.lower()
    if scheme in ("http", "https", "ftp"):
        raise bad_request("remote image URLs are not fetched (the server works offline); send the image as a "
                          "data:image/...;base64 URI or a file:// path on the server", param)
    if scheme == "file":
        path = Path(unquote(urlparse(url).path))
    elif scheme == "" and url.startswith("/"):
        path = Path(url)
    else:
        raise bad_request(f"unsupported image URL {url[:40]!r}: use a data: URI, a file:// URL or an absolute path",
                          param)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise bad_request(f"cannot read the image file {str(path)!r}: {exc.strerror or exc}", param) from exc


def load_image(part: dict, param: str):
    """The content part's image as an RGB ``PIL.Image`` (400 for anything that is not one)."""
    from PIL import Image, UnidentifiedImageError

    data = _bytes_of(_url_of(part, param), param)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise bad_request(f"the image could not be decoded: {exc}", param) from exc
    return image.convert("RGB")
