"""Uploaded files: stored with Django's default storage, owned by the App that received them.

What a run's engine sees (`input.files`, a list in upload order): `{id, name, size, mime_type}` and, for a
small text file (text/*, JSON, XML, YAML, CSV; at most FILE_TEXT_CONTENT_BYTES, valid UTF-8), its text as
`content`, so a template can use `{{ input.files[0].content }}`. Binary or larger files are described
without content, and never by a storage path.
"""

from __future__ import annotations

import mimetypes
import os
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from apps.core.errors import BadRequest, NotFound, PayloadTooLarge
from apps.deployments.models import App

from .models import File

FILE_TEXT_CONTENT_BYTES = 64 * 1024
MAX_FILES_PER_RUN = 20
_TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/x-yaml", "text/csv")


def _mime_type(upload: UploadedFile, name: str) -> str:
    given = (upload.content_type or "").split(";")[0].strip().lower()
    if given and given != "application/octet-stream" and "/" in given and len(given) <= 255:
        return given
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def file_create(*, app: App, upload: UploadedFile) -> File:
    """Store one upload for `app`. Refuses files over MAX_UPLOAD_BYTES (413)."""
    if upload.size is None or upload.size > settings.MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"A file may be at most {settings.MAX_UPLOAD_BYTES} bytes.",
                              details={"file": [f"larger than {settings.MAX_UPLOAD_BYTES} bytes"]})
    name = os.path.basename((upload.name or "").replace("\\", "/"))[:255] or "upload"
    record = File(id=uuid.uuid4(), app=app, name=name, size=upload.size, mime_type=_mime_type(upload, name))
    record.file.save(str(record.id), upload, save=False)
    record.save(force_insert=True)
    return record


def files_create(*, app: App, uploads: Iterable[UploadedFile]) -> list[File]:
    uploads = list(uploads)
    if len(uploads) > MAX_FILES_PER_RUN:
        raise BadRequest("Too many files.", details={"files": [f"at most {MAX_FILES_PER_RUN}"]})
    return [file_create(app=app, upload=upload) for upload in uploads]


def files_for_app(*, app: App, file_ids: list[str]) -> list[File]:
    """The App's files with these IDs, in the given order. A file of another App is as unknown as a file
    that does not exist: 404."""
    if not file_ids:
        return []
    found = {str(f.id): f for f in File.objects.filter(app=app, id__in=file_ids)}
    missing = [file_id for file_id in file_ids if file_id not in found]
    if missing:
        raise NotFound("No such file.", details={"file_ids": [f"unknown file: {file_id}" for file_id in missing]})
    return [found[file_id] for file_id in file_ids]


def serialize_file(record: File) -> dict[str, Any]:
    return {"id": str(record.id), "name": record.name, "size": record.size, "mime_type": record.mime_type}


def _is_text(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in _TEXT_TYPES or mime_type.endswith("+json")


def file_descriptors(*, app_id, file_ids: list[str]) -> list[dict[str, Any]]:
    """What the engine gets for a run's files (see module doc). One query, plus reading small text files."""
    records = {str(f.id): f for f in File.objects.filter(app_id=app_id, id__in=file_ids)}
    descriptors = []
    for file_id in file_ids:
        record = records.get(str(file_id))
        if record is None:  # deleted since the run was accepted
            continue
        descriptor = serialize_file(record)
        if _is_text(record.mime_type) and record.size <= FILE_TEXT_CONTENT_BYTES:
            try:
                with record.file.open("rb") as handle:
                    text = handle.read(FILE_TEXT_CONTENT_BYTES + 1).decode("utf-8")
                if "\x00" not in text:  # NUL: binary after all (and PostgreSQL JSON cannot store it)
                    descriptor["content"] = text
            except (OSError, UnicodeDecodeError):
                pass
        descriptors.append(descriptor)
    return descriptors
